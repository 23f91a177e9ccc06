// A stand-in for `@pulumi/digitalocean`, used ONLY by the testbed (testbed/deploy/deploy.ts and
// testbed/deploy/cloudSelftest.ts). Like commandShim.ts it replaces `require("@pulumi/digitalocean")`
// in the module cache with Pulumi *dynamic* resources, run by the real engine through the
// pulumi-resource-pulumi-nodejs provider; the program is unchanged. "The account" is a JSON file,
// $B/cloud/do-account.json ($B = $TESTBED_DIR, default /var/tmp/phillymesh-testbed); what happens on
// the machine (guests, loop devices, addresses, nftables) is done by testbed/cloud/do-host.sh.
//
// What it mirrors (terraform-provider-digitalocean, github.com/digitalocean/terraform-provider-digitalocean,
// the provider @pulumi/digitalocean 4.x bridges; and the API behaviour its code relies on):
//   SshKey     digitalocean/sshkey/resource_ssh_key.go: name (update in place), public_key ForceNew
//              with a TrimSpace diff-suppress; id numeric; fingerprint = MD5 of the key blob, colon
//              hex (what the API returns); a key already in the account: 422 "SSH Key is already in
//              use on your account".
//   getSshKeys digitalocean/sshkey/datasource_ssh_keys.go + ssh_keys.go (internal/datalist): ssh_keys
//              [{id (int), name, fingerprint, public_key}], with the datalist's filter/sort.
//   Volume     digitalocean/volume/resource_volume.go: region, name, description, snapshot_id,
//              initial_filesystem_type, initial_filesystem_label ForceNew (description too: a new
//              description REPLACES the volume); size updates in place (StorageActions.Resize: the
//              block device grows, the filesystem does not); CustomizeDiff refuses a smaller size
//              at plan time ("volumes `size` can only be expanded and not shrunk"); id a UUID;
//              initial_filesystem_type ext4 is pre-formatted at create (mkfs.ext4 on the image).
//              Deleting an attached volume: 409 "attached volume cannot be deleted" (doctl#358).
//              A second volume of the same name in a region: 409 "already exists" (hashicorp/terraform#8023).
//   Droplet    digitalocean/droplet/resource_droplet.go: image, region, ssh_keys, user_data, monitoring,
//              droplet_agent, vpc_uuid, public_networking, gpu_partition_mode ForceNew, and ipv6
//              true->false ForceNew (CustomizeDiff, issue 1104); name, size, tags, backups, ipv6
//              false->true update in place. Create BOOTS A TESTBED GUEST (boot.sh --no-data-dir
//              --authorized-keys: root holds exactly the keys named in ssh_keys, by fingerprint or
//              id as expandSshKeys reads them; a new machine-id). Unknown image: 422 "You specified an
//              invalid image for Droplet creation." (terraform-provider-digitalocean PR 1035); unknown
//              keys: 422 "<keys> are invalid key identifiers for Droplet creation." (issue 331).
//              Size update: the guest's memory cap changes (DO powers the droplet off for a resize).
//              Delete destroys the guest (clean poweroff) and, as the API does, detaches its volumes,
//              unassigns its reserved IPs and drops it from firewalls.
//   VolumeAttachment digitalocean/volume/resource_volume_attachment.go: droplet_id, volume_id
//              ForceNew; create attaches unless the volume is already on that droplet; only "Droplet
//              already has a pending event." is retried, so a volume attached ELSEWHERE fails at once
//              with the API's 422 (csi-digitalocean driver/controller.go matches "This volume is
//              already attached"); delete DetachByDropletID: 422 "Attachment not found" (doctl#207)
//              when it is not on that droplet. The device appears in the guest as /dev/sdX with
//              /dev/disk/by-id/scsi-0DO_Volume_<name> (docs.digitalocean.com/products/volumes/
//              details/naming-conventions). The FIRST attach of a volume created pre-formatted
//              auto-mounts it at /mnt/<name, - replaced by _> with an enabled systemd mount unit
//              /etc/systemd/system/mnt-<name_>.mount, options defaults,nofail,discard,noatime
//              (docs .../volumes/how-to/mount: "only during a volume's initial creation"); later
//              attaches do not. The program must clean that mount up itself.
//              (TESTBED_DO_AUTOMOUNT=fstab writes an /etc/fstab line instead of the unit.)
//              STRICTER THAN DIGITALOCEAN: detaching while the filesystem is mounted anywhere inside
//              the guest FAILS LOUDLY. DigitalOcean would pull the disk from under the running
//              system (and PostgreSQL); that is the data-loss bug the program's clean-stop step exists
//              to prevent, and the stand-in makes its absence visible.
//   ReservedIp digitalocean/reservedip/resource_reserved_ip.go: region ForceNew; ip from the
//              testbed's pool (10.250.0.130-140; TESTBED_DO_RESERVED_IPS=FROM-TO of the last octet);
//              id = the address. Droplets get 10.250.0.100-129 (TESTBED_DO_DROPLET_IPS), guest
//              do-<droplet id>, and with ipv6 2001:db8:250::<octet in hex> on their interface.
//   ReservedIpAssignment .../resource_reserved_ip_assignment.go: ip_address, droplet_id ForceNew;
//              create = the Assign action, which MOVES an address assigned to another droplet;
//              delete unassigns only if it is still on that droplet ("reserved IP already
//              unassigned, removing from state" otherwise; the real code would dereference a nil
//              Droplet there if it is on none: the stand-in treats that as unassigned). Assigning adds
//              the address as /32 to the guest's host0, sends a gratuitous ARP and flushes the host's
//              neighbour entry, so traffic follows at once.
//   Firewall   digitalocean/firewall/resource_firewall.go + firewalls.go: nothing ForceNew (every
//              change is an update); protocol tcp|udp|icmp; port_range required for tcp/udp;
//              "At least one rule must be specified". The rules are ENFORCED from outside the guest:
//              nftables table `inet phillymesh_do_fw` on the host, stateful (conntrack), matching the
//              droplet's addresses (its own, IPv6, reserved IPs) on the host's output/input hooks and
//              on forward for bridged traffic (br_netfilter, bridge-nf-call-iptables=1). Like a
//              DigitalOcean cloud firewall it blocks (drops) whatever no rule allows, in both
//              directions; several firewalls on one droplet add up.
//
// What it does NOT cover: refresh/import (no read), tags as firewall/rule targets, source/destination
// droplet ids, load balancers and kubernetes in rules, user_data (refused: no cloud-init in the
// testbed), backups, snapshots, VPCs, private networking, droplet resize's disk and power cycle,
// the API's "pending event" races, volume limits and regions' availability. The reserved IP is an
// address of the guest's interface (on DigitalOcean it is routed to the droplet's anchor IP and is
// not on eth0). debian-12-x64 and debian-13-x64 both boot the testbed's trixie template (the slug is
// recorded, so a change is still a replacement). API error texts are those cited above; the others
// ("invalid region", "invalid size", region mismatch, droplet not found) are in the same form but
// their wording is ours. A volume attached elsewhere fails with 422 and the wording "This volume is
// already attached to another Droplet"; only the "This volume is already attached" part is cited.
// Visible differences: types are pulumi-nodejs:dynamic/digitalocean:<Name>; every resource has an
// extra input `__repo` (the repository, for testbed/cloud/do-host.sh; never diffed).
import * as pulumi from "@pulumi/pulumi";
import { canon, installModule, isUnknown, plain, strictModule, withDirLock } from "./shimKit";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

// ---------------------------------------------------------------------------------------------
// Everything below up to the resource classes is serialized into the state with the providers and
// runs in the dynamic provider's process: plain functions and constants only, no imports.


/** Image slugs the testbed can boot, and the template each boots. */
const DO_IMAGES: Record<string, string> = { "debian-13-x64": "trixie", "debian-12-x64": "trixie" };
const DO_REGIONS = ["nyc1", "nyc2", "nyc3", "sfo1", "sfo2", "sfo3", "ams2", "ams3", "sgp1", "lon1", "fra1", "tor1", "blr1", "syd1", "atl1", "ric1"];
/** Size slugs: memory (MiB, the guest's memory cap), vCPUs and disk (GB, recorded only). */
const DO_SIZES: Record<string, { memory: number; vcpus: number; disk: number }> = {
    "s-1vcpu-512mb-10gb": { memory: 512, vcpus: 1, disk: 10 },
    "s-1vcpu-1gb": { memory: 1024, vcpus: 1, disk: 25 },
    "s-1vcpu-1gb-amd": { memory: 1024, vcpus: 1, disk: 25 },
    "s-1vcpu-1gb-intel": { memory: 1024, vcpus: 1, disk: 25 },
    "s-1vcpu-2gb": { memory: 2048, vcpus: 1, disk: 50 },
    "s-2vcpu-2gb": { memory: 2048, vcpus: 2, disk: 60 },
    "s-2vcpu-4gb": { memory: 4096, vcpus: 2, disk: 80 },
    "s-4vcpu-8gb": { memory: 8192, vcpus: 4, disk: 160 },
};
const FIRST_DROPLET_ID = 500000001;
const FIRST_KEY_ID = 41000001;

/** A TypeSet: order and duplicates do not matter. */
function canonSet(v: unknown): string {
    if (!Array.isArray(v) || v.length === 0) return "[]";
    return `[${[...new Set(v.map(canon))].sort().join(",")}]`;
}

/** The error the provider reports for an API answer, in godo's shape. */
function apiError(prefix: string, method: string, path: string, status: number, message: string): Error {
    const request = require("crypto").randomUUID();
    return new Error(`${prefix}: ${method} https://api.digitalocean.com/v2/${path}: ${status} (request "${request}") ${message}`);
}

/** Parses "type base64 [comment]"; the blob's MD5 as aa:bb:... is DigitalOcean's fingerprint. */
function parsePublicKey(publicKey: string): { type: string; blob: Buffer; fingerprint: string } | string {
    const parts = String(publicKey ?? "").trim().split(/\s+/);
    const types = ["ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521", "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"];
    if (parts.length < 2 || !types.includes(parts[0]) || !/^[A-Za-z0-9+/]+={0,2}$/.test(parts[1])) {
        return "Key invalid, key should be of the format `type key [comment]`";
    }
    const blob = Buffer.from(parts[1], "base64");
    // The blob starts with the key type as an SSH string: a wrong paste (or a private key) is caught here.
    const len = blob.length >= 4 ? blob.readUInt32BE(0) : -1;
    if (len !== parts[0].length || blob.subarray(4, 4 + len).toString() !== parts[0]) {
        return "Key invalid, key should be of the format `type key [comment]`";
    }
    const md5 = require("crypto").createHash("md5").update(blob).digest("hex") as string;
    return { type: parts[0], blob, fingerprint: md5.match(/../g)!.join(":") };
}

function stateDir(): string {
    return process.env.TESTBED_DIR || "/var/tmp/phillymesh-testbed";
}

function cloudDir(): string {
    return require("path").join(stateDir(), "cloud");
}

function accountFile(): string {
    return require("path").join(cloudDir(), "do-account.json");
}

function emptyAccount(): any {
    return { nextDropletId: FIRST_DROPLET_ID, nextKeyId: FIRST_KEY_ID, sshKeys: [], droplets: [], volumes: [], reservedIps: [], firewalls: [] };
}

function readAccount(): any {
    const fs = require("fs");
    try {
        return { ...emptyAccount(), ...JSON.parse(fs.readFileSync(accountFile(), "utf8")) };
    } catch (e: any) {
        if (e.code === "ENOENT") return emptyAccount();
        throw e;
    }
}

function writeAccount(account: any): void {
    const fs = require("fs");
    fs.mkdirSync(cloudDir(), { recursive: true });
    const tmp = `${accountFile()}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(account, null, 2) + "\n");
    fs.renameSync(tmp, accountFile());
}

/**
 * Runs fn on the account under $B/cloud/.do.lock (a directory: mkdir is atomic; a lock whose owner
 * died is taken over) and saves what fn left in it, unless fn throws.
 */
async function withAccount<T>(fn: (account: any) => Promise<T> | T): Promise<T> {
    const path = require("path");
    return withDirLock(path.join(cloudDir(), ".do.lock"), "the DigitalOcean stand-in's account", async () => {
        const account = readAccount();
        const result = await fn(account);
        writeAccount(account);
        return result;
    });
}

/** The repository (for testbed/cloud/do-host.sh): $TESTBED_REPO, else the resource's __repo input. */
function repoOf(props: any): string {
    const repo = process.env.TESTBED_REPO || props?.__repo;
    if (!repo) throw new Error("the DigitalOcean stand-in does not know the repository (set TESTBED_REPO)");
    return repo;
}

/** Runs testbed/cloud/do-host.sh OP ARGS...; resolves with its stdout, rejects with its stderr. */
function hostOp(props: any, args: string[], stdin?: string): Promise<string> {
    const cp = require("child_process");
    const path = require("path");
    const script = path.join(repoOf(props), "testbed", "cloud", "do-host.sh");
    return new Promise((resolve, reject) => {
        const p = cp.spawn("bash", [script, ...args], { stdio: ["pipe", "pipe", "pipe"] });
        let out = "";
        let err = "";
        p.stdout.on("data", (d: Buffer) => (out += d.toString()));
        p.stderr.on("data", (d: Buffer) => (err += d.toString()));
        p.on("error", (e: Error) => reject(e));
        p.on("close", (code: number | null) => {
            if (code === 0) resolve(out.trim());
            else reject(new Error(`${err.trim().split("\n").slice(-15).join("\n")}\n(testbed/cloud/do-host.sh ${args[0]}: exit ${code})`));
        });
        p.stdin.on("error", () => undefined);
        p.stdin.end(stdin ?? "");
    });
}

function dropletOf(account: any, id: unknown): any {
    return account.droplets.find((d: any) => String(d.id) === String(id));
}

function volumeOf(account: any, id: unknown): any {
    return account.volumes.find((v: any) => v.id === id);
}

/** ipv4/ipv6 CIDR or address, as the firewall API takes them. */
function isCidr(s: string): boolean {
    const v4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(\/(\d{1,2}))?$/.exec(s);
    if (v4) return v4.slice(1, 5).every((o) => Number(o) <= 255) && (v4[6] === undefined || Number(v4[6]) <= 32);
    const v6 = /^([0-9a-fA-F:]+)(\/(\d{1,3}))?$/.exec(s);
    return !!v6 && v6[1].includes(":") && (v6[3] === undefined || Number(v6[3]) <= 128);
}

/** "22", "8000-9000", "0"/"all" (every port); anything else is not a port range. */
function portRange(s: unknown): { from: number; to: number } | "all" | undefined {
    const t = String(s ?? "").trim();
    if (t === "0" || t === "all") return "all";
    const m = /^(\d{1,5})(?:-(\d{1,5}))?$/.exec(t);
    if (!m) return undefined;
    const from = Number(m[1]);
    const to = m[2] === undefined ? from : Number(m[2]);
    if (from < 1 || to > 65535 || from > to) return undefined;
    return { from, to };
}

/** Plan-time checks of a firewall (CustomizeDiff and the rule schema's validators in firewalls.go). */
function firewallFailures(news: any): { property: string; reason: string }[] {
    const failures: { property: string; reason: string }[] = [];
    const inbound = news.inboundRules ?? [];
    const outbound = news.outboundRules ?? [];
    if (!isUnknown(news.name) && !news.name) failures.push({ property: "name", reason: "name must not be empty" });
    if (inbound.length === 0 && outbound.length === 0) failures.push({ property: "inboundRules", reason: "At least one rule must be specified" });
    const check = (rules: any[], dir: "inbound" | "outbound", prop: string) => {
        const who = dir === "inbound" ? "source" : "destination";
        rules.forEach((r: any, i: number) => {
            if (isUnknown(r)) return;
            if (!["tcp", "udp", "icmp"].includes(r.protocol)) failures.push({ property: `${prop}[${i}].protocol`, reason: `expected protocol to be one of ["tcp" "udp" "icmp"], got ${r.protocol}` });
            if (r.protocol !== "icmp" && !r.portRange) failures.push({ property: `${prop}[${i}].portRange`, reason: `\`port_range\` of ${dir} rules is required if protocol is \`tcp\` or \`udp\`` });
            if (r.portRange !== undefined && r.protocol !== "icmp" && portRange(r.portRange) === undefined) failures.push({ property: `${prop}[${i}].portRange`, reason: `invalid port range ${JSON.stringify(r.portRange)}` });
            const addrs = r[`${who}Addresses`] ?? [];
            for (const a of addrs) if (!isUnknown(a) && !isCidr(a)) failures.push({ property: `${prop}[${i}].${who}Addresses`, reason: `invalid address ${JSON.stringify(a)}` });
            for (const k of [`${who}DropletIds`, `${who}Tags`, `${who}LoadBalancerUids`, `${who}KubernetesIds`]) {
                if (r[k] && r[k].length > 0) failures.push({ property: `${prop}[${i}].${k}`, reason: `${k} is not in the testbed stand-in (addresses only)` });
            }
            if (addrs.length === 0) failures.push({ property: `${prop}[${i}].${who}Addresses`, reason: `a rule without ${who} addresses matches nothing in the testbed stand-in` });
        });
    };
    check(inbound, "inbound", "inboundRules");
    check(outbound, "outbound", "outboundRules");
    if (news.tags && news.tags.length > 0) failures.push({ property: "tags", reason: "firewall tags are not in the testbed stand-in" });
    return failures;
}

/**
 * The nftables script enforcing every firewall of the account (empty: no firewall, no table). Each
 * firewalled droplet gets chains in_<id> (traffic to its addresses) and out_<id> (from them);
 * allowed traffic `return`s (so both ends' chains are consulted for guest-to-guest traffic), the
 * rest is dropped. Stateful: replies of allowed connections pass.
 */
function renderFirewall(account: any): string {
    const table = "phillymesh_do_fw";
    const per = new Map<number, { inbound: any[]; outbound: any[] }>();
    for (const fw of account.firewalls ?? []) {
        for (const id of fw.dropletIds ?? []) {
            const e = per.get(Number(id)) ?? { inbound: [], outbound: [] };
            e.inbound.push(...(fw.inboundRules ?? []));
            e.outbound.push(...(fw.outboundRules ?? []));
            per.set(Number(id), e);
        }
    }
    const guests: { id: number; v4: string[]; v6: string[]; inbound: any[]; outbound: any[] }[] = [];
    for (const [id, rules] of [...per.entries()].sort((a, b) => a[0] - b[0])) {
        const d = (account.droplets ?? []).find((x: any) => Number(x.id) === id);
        if (!d) continue;
        const v4 = [d.ipv4, ...(account.reservedIps ?? []).filter((r: any) => Number(r.dropletId) === id).map((r: any) => r.ip)].filter(Boolean);
        const v6 = d.ipv6 ? [d.ipv6] : [];
        guests.push({ id, v4, v6, ...rules });
    }
    if (guests.length === 0) return "";
    const set = (xs: string[]) => `{ ${xs.join(", ")} }`;
    const ruleLines = (rules: any[], who: "saddr" | "daddr", key: string): string[] => {
        const lines: string[] = [];
        for (const r of rules) {
            const addrs: string[] = r[key] ?? [];
            const v4 = addrs.filter((a) => !a.includes(":"));
            const v6 = addrs.filter((a) => a.includes(":"));
            let l4: string;
            if (r.protocol === "icmp") l4 = "";
            else {
                const pr = portRange(r.portRange);
                l4 = pr === "all" || pr === undefined ? `meta l4proto ${r.protocol}` : `${r.protocol} dport ${pr.from === pr.to ? pr.from : `${pr.from}-${pr.to}`}`;
            }
            if (v4.length > 0) lines.push(`${r.protocol === "icmp" ? "ip protocol icmp " : ""}ip ${who} ${set(v4)}${l4 ? ` ${l4}` : ""} return`);
            if (v6.length > 0) lines.push(`${r.protocol === "icmp" ? "meta l4proto ipv6-icmp " : ""}ip6 ${who} ${set(v6)}${l4 ? ` ${l4}` : ""} return`);
        }
        return lines;
    };
    const out: string[] = [];
    // Declare, delete, declare again: one transaction that replaces whatever was there.
    out.push(`table inet ${table} {}`, `delete table inet ${table}`, `table inet ${table} {`);
    const base = (name: string, hook: string, lines: string[]) => {
        out.push(`  chain ${name} {`, `    type filter hook ${hook} priority filter; policy accept;`, ...lines.map((l) => `    ${l}`), "  }");
    };
    const to = (g: (typeof guests)[0]) => [...(g.v4.length ? [`ip daddr ${set(g.v4)} jump in_${g.id}`] : []), ...(g.v6.length ? [`ip6 daddr ${set(g.v6)} jump in_${g.id}`] : [])];
    const from = (g: (typeof guests)[0]) => [...(g.v4.length ? [`ip saddr ${set(g.v4)} jump out_${g.id}`] : []), ...(g.v6.length ? [`ip6 saddr ${set(g.v6)} jump out_${g.id}`] : [])];
    // forward: guest to guest across the bridge (br_netfilter); output: the host to a guest; input: a guest to the host.
    base("forward_hook", "forward", [...guests.flatMap(from), ...guests.flatMap(to)]);
    base("output_hook", "output", guests.flatMap(to));
    base("input_hook", "input", guests.flatMap(from));
    for (const g of guests) {
        const plumbing = ["ct state established,related return", "ct state invalid drop", "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } return"];
        out.push(`  chain in_${g.id} {`, ...[...plumbing, ...ruleLines(g.inbound, "saddr", "sourceAddresses"), "counter drop"].map((l) => `    ${l}`), "  }");
        out.push(`  chain out_${g.id} {`, ...[...plumbing, ...ruleLines(g.outbound, "daddr", "destinationAddresses"), "counter drop"].map((l) => `    ${l}`), "  }");
    }
    out.push("}");
    return out.join("\n") + "\n";
}

/** Re-renders and applies every firewall (call with the account as it now is). */
async function applyFirewalls(props: any, account: any): Promise<void> {
    await hostOp(props, ["firewall-apply"], renderFirewall(account));
}

/** Picks the lowest free address of 10.250.0.FROM-TO (env "FROM-TO" overrides). */
function freeAddress(pool: string, taken: Set<string>): string | undefined {
    const m = /^(\d+)-(\d+)$/.exec(pool);
    if (!m) throw new Error(`bad address pool '${pool}' (FROM-TO, last octets)`);
    for (let o = Number(m[1]); o <= Number(m[2]); o++) {
        const ip = `10.250.0.${o}`;
        if (!taken.has(ip)) return ip;
    }
    return undefined;
}

/** Every 10.250.0.x in use: the account's droplets and reserved IPs, and every booted guest. */
function takenAddresses(account: any): Set<string> {
    const fs = require("fs");
    const path = require("path");
    const taken = new Set<string>([...account.droplets.map((d: any) => d.ipv4), ...account.reservedIps.map((r: any) => r.ip)]);
    for (const e of fs.readdirSync(stateDir(), { withFileTypes: true })) {
        if (!e.isDirectory() || !e.name.startsWith("run-")) continue;
        try {
            taken.add(fs.readFileSync(path.join(stateDir(), e.name, "ip"), "utf8").trim());
        } catch {
            // not a guest
        }
    }
    return taken;
}

/** Diff of old outputs against new inputs, TF-style: `forceNew` keys replace, `update` keys update;
 * `computed` (Optional+Computed) keys left out of the config keep their value. */
function tfDiff(olds: any, news: any, spec: { forceNew: string[]; update: string[]; computed?: string[]; sets?: string[]; defaults?: Record<string, unknown>; normalize?: Record<string, (v: any) => any> }): pulumi.dynamic.DiffResult {
    const replaces: string[] = [];
    let changes = false;
    for (const k of [...spec.forceNew, ...spec.update]) {
        if (spec.computed?.includes(k) && (news[k] === undefined || news[k] === null)) continue;
        const norm = spec.normalize?.[k] ?? ((v: any) => v);
        const dflt = spec.defaults?.[k];
        const o = norm(olds[k] ?? dflt);
        const n = norm(news[k] ?? dflt);
        const same = spec.sets?.includes(k) ? canonSet(o) === canonSet(n) : canon(o) === canon(n);
        if (same) continue;
        changes = true;
        if (spec.forceNew.includes(k)) replaces.push(k);
    }
    return { changes, replaces };
}

// --- the providers -----------------------------------------------------------------------------

const sshKeyProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.name) && !news.name) failures.push({ property: "name", reason: "name must not be empty" });
        if (!isUnknown(news.publicKey) && !news.publicKey) failures.push({ property: "publicKey", reason: "publicKey must not be empty" });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, { forceNew: ["publicKey"], update: ["name"], normalize: { publicKey: (v: any) => String(v ?? "").trim() } });
    },
    async create(inputs: any) {
        const parsed = parsePublicKey(inputs.publicKey);
        if (typeof parsed === "string") throw apiError("Error creating SSH Key", "POST", "account/keys", 422, parsed);
        return withAccount((a) => {
            if (a.sshKeys.some((k: any) => k.fingerprint === parsed.fingerprint)) {
                throw apiError("Error creating SSH Key", "POST", "account/keys", 422, "SSH Key is already in use on your account");
            }
            const key = { id: a.nextKeyId++, name: inputs.name, fingerprint: parsed.fingerprint, publicKey: String(inputs.publicKey).trim() };
            a.sshKeys.push(key);
            return { id: String(key.id), outs: plain({ __repo: inputs.__repo, name: key.name, publicKey: inputs.publicKey, fingerprint: key.fingerprint }) };
        });
    },
    async update(id: string, olds: any, news: any) {
        return withAccount((a) => {
            const key = a.sshKeys.find((k: any) => String(k.id) === id);
            if (!key) throw apiError("Failed to update SSH key", "PUT", `account/keys/${id}`, 404, "The resource you were accessing could not be found.");
            key.name = news.name;
            return { outs: plain({ ...olds, __repo: news.__repo, name: news.name, publicKey: news.publicKey }) };
        });
    },
    async delete(id: string) {
        await withAccount((a) => {
            const before = a.sshKeys.length;
            a.sshKeys = a.sshKeys.filter((k: any) => String(k.id) !== id);
            if (a.sshKeys.length === before) throw apiError("Error deleting SSH key", "DELETE", `account/keys/${id}`, 404, "The resource you were accessing could not be found.");
        });
    },
};

const volumeProvider: pulumi.dynamic.ResourceProvider = {
    async check(olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.name) && !/^[a-z][a-z0-9-]{0,63}$/.test(String(news.name ?? ""))) {
            failures.push({ property: "name", reason: "name: lowercase letters, digits and -, starting with a letter, at most 64 (the testbed stand-in needs a name: no autonaming)" });
        }
        if (!isUnknown(news.region) && !news.region) failures.push({ property: "region", reason: "region is required" });
        if (!isUnknown(news.size) && !(Number.isInteger(news.size) && news.size >= 1)) failures.push({ property: "size", reason: `expected size to be at least (1), got ${news.size}` });
        if (news.initialFilesystemType !== undefined && !isUnknown(news.initialFilesystemType) && !["ext4", "xfs"].includes(news.initialFilesystemType)) {
            failures.push({ property: "initialFilesystemType", reason: `expected initial_filesystem_type to be one of ["ext4" "xfs"], got ${news.initialFilesystemType}` });
        }
        if (news.snapshotId) failures.push({ property: "snapshotId", reason: "snapshots are not in the testbed stand-in" });
        if (news.filesystemType && news.initialFilesystemType) failures.push({ property: "filesystemType", reason: '"filesystem_type": conflicts with initial_filesystem_type' });
        // resource_volume.go CustomizeDiff: at plan time.
        if (olds && olds.size !== undefined && !isUnknown(news.size) && Number(news.size) < Number(olds.size)) {
            failures.push({ property: "size", reason: "volumes `size` can only be expanded and not shrunk" });
        }
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, {
            forceNew: ["region", "name", "description", "snapshotId", "initialFilesystemType", "initialFilesystemLabel"],
            update: ["size", "tags"],
            sets: ["tags"],
            computed: ["filesystemType"],
            normalize: { region: (v: any) => (v === undefined ? v : String(v).toLowerCase()) },
        });
    },
    async create(inputs: any) {
        const path = require("path");
        const region = String(inputs.region).toLowerCase();
        const fstype = inputs.initialFilesystemType ?? inputs.filesystemType ?? "";
        const id = require("crypto").randomUUID();
        const image = path.join(cloudDir(), "volumes", `${id}.img`);
        await withAccount((a) => {
            if (!DO_REGIONS.includes(region)) throw apiError("Error creating Volume", "POST", "volumes", 422, "invalid region");
            if (inputs.size > 16384) throw apiError("Error creating Volume", "POST", "volumes", 422, "size_gigabytes must be at most 16384");
            if (a.volumes.some((v: any) => v.name === inputs.name && v.region === region)) throw apiError("Error creating Volume", "POST", "volumes", 409, "already exists");
            a.volumes.push({ id, name: inputs.name, region, size: inputs.size, description: inputs.description, filesystemType: fstype || undefined, filesystemLabel: inputs.initialFilesystemLabel, image, dropletIds: [], autoMountPending: !!fstype, status: "creating", createdAt: new Date().toISOString() });
        });
        try {
            await hostOp(inputs, ["volume-create", image, String(inputs.size), fstype, inputs.initialFilesystemLabel ?? ""]);
        } catch (e) {
            await withAccount((a) => void (a.volumes = a.volumes.filter((v: any) => v.id !== id)));
            throw new Error(`Error creating Volume: ${(e as Error).message}`);
        }
        await withAccount((a) => void (volumeOf(a, id).status = "available"));
        return {
            id,
            outs: plain({ ...inputs, region, volumeUrn: `do:volume:${id}`, dropletIds: [], filesystemType: fstype || undefined, filesystemLabel: inputs.initialFilesystemLabel }),
        };
    },
    async update(id: string, olds: any, news: any) {
        if (Number(news.size) !== Number(olds.size)) {
            await withAccount(async (a) => {
                const v = volumeOf(a, id);
                if (!v) throw apiError(`Error resizing volume (${id})`, "POST", `volumes/${id}/actions`, 404, "The resource you were accessing could not be found.");
                if (Number(news.size) < v.size) throw apiError(`Error resizing volume (${id})`, "POST", `volumes/${id}/actions`, 422, "new size must be larger than the current size");
                await hostOp(news, ["volume-resize", v.image, String(news.size)]);
                v.size = Number(news.size);
            });
        }
        await withAccount((a) => void (volumeOf(a, id).tags = news.tags));
        return { outs: plain({ ...olds, ...news, region: olds.region }) };
    },
    async delete(id: string, props: any) {
        const v = await withAccount((a) => {
            const v = volumeOf(a, id);
            if (!v) return undefined;
            if (v.dropletIds.length > 0) throw apiError("Error deleting volume", "DELETE", `volumes/${id}`, 409, "attached volume cannot be deleted");
            v.status = "deleting";
            return v;
        });
        if (!v) throw apiError("Error deleting volume", "DELETE", `volumes/${id}`, 404, "The resource you were accessing could not be found.");
        await hostOp(props, ["volume-delete", v.image]);
        await withAccount((a) => void (a.volumes = a.volumes.filter((x: any) => x.id !== id)));
    },
};

const DROPLET_FORCE_NEW = ["image", "region", "sshKeys", "userData", "monitoring", "dropletAgent", "vpcUuid", "publicNetworking", "gpuPartitionMode"];
const DROPLET_UPDATE = ["name", "size", "tags", "backups", "backupPolicy", "gracefulShutdown", "resizeDisk", "ipv6", "privateNetworking", "volumeIds"];

const dropletProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.name) && !news.name) failures.push({ property: "name", reason: "the testbed stand-in needs a name (no autonaming)" });
        if (!isUnknown(news.image) && !news.image) failures.push({ property: "image", reason: "image is required" });
        if (!isUnknown(news.size) && !news.size) failures.push({ property: "size", reason: "size is required" });
        if (news.userData) failures.push({ property: "userData", reason: "user_data is not in the testbed stand-in (no cloud-init in the testbed guests)" });
        for (const k of ["volumeIds", "vpcUuid", "backupPolicy", "gpuPartitionMode"]) {
            if (news[k] !== undefined && !(Array.isArray(news[k]) && news[k].length === 0)) failures.push({ property: k, reason: `${k} is not in the testbed stand-in` });
        }
        if (news.backupPolicy && !news.backups) failures.push({ property: "backupPolicy", reason: "backup_policy can only be set when backups are enabled" });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        const r = tfDiff(olds, news, {
            forceNew: DROPLET_FORCE_NEW,
            update: DROPLET_UPDATE,
            sets: ["sshKeys", "tags", "volumeIds"],
            computed: ["region", "vpcUuid", "publicNetworking", "privateNetworking", "volumeIds"],
            defaults: { monitoring: false, ipv6: false, backups: false, gracefulShutdown: false, resizeDisk: true },
            normalize: { region: (v: any) => (v === undefined ? v : String(v).toLowerCase()), size: (v: any) => (v === undefined ? v : String(v).toLowerCase()) },
        });
        // resource_droplet.go CustomizeDiff: ipv6 true -> false forces a new droplet (issue 1104).
        if ((olds.ipv6 ?? false) === true && news.ipv6 === false) return { changes: true, replaces: [...(r.replaces ?? []), "ipv6"] };
        return r;
    },
    async create(inputs: any) {
        const fs = require("fs");
        const path = require("path");
        const region = String(inputs.region ?? "nyc3").toLowerCase();
        const size = String(inputs.size).toLowerCase();
        const fail = (status: number, msg: string) => apiError("Error creating droplet", "POST", "droplets", status, msg);
        const d = await withAccount((a) => {
            if (!(inputs.image in DO_IMAGES)) throw fail(422, "You specified an invalid image for Droplet creation.");
            if (!DO_REGIONS.includes(region)) throw fail(422, "You specified an invalid region for Droplet creation.");
            if (!(size in DO_SIZES)) throw fail(422, "You specified an invalid size for Droplet creation.");
            // expandSshKeys: an integer is a key id, anything else a fingerprint.
            const wanted: string[] = (inputs.sshKeys ?? []).map(String);
            const keys = wanted.map((k) => a.sshKeys.find((x: any) => (/^\d+$/.test(k) ? String(x.id) === k : x.fingerprint === k)));
            const bad = wanted.filter((_k, i) => !keys[i]);
            if (bad.length > 0) throw fail(422, `${bad.join(", ")} are invalid key identifiers for Droplet creation.`);
            const ipv4 = freeAddress(process.env.TESTBED_DO_DROPLET_IPS || "100-129", takenAddresses(a));
            if (!ipv4) throw fail(422, "the testbed's droplet address pool is exhausted (TESTBED_DO_DROPLET_IPS)");
            const id = a.nextDropletId++;
            const octet = Number(ipv4.split(".")[3]);
            const d = {
                id, name: inputs.name, guest: `do-${id}`, ipv4, ipv6: inputs.ipv6 ? `2001:db8:250::${octet.toString(16)}` : undefined,
                image: inputs.image, region, size, tags: inputs.tags ?? [], sshKeys: keys.map((k: any) => k.id), monitoring: !!inputs.monitoring,
                status: "new", createdAt: new Date().toISOString(), authorizedKeys: keys.map((k: any) => k.publicKey),
            };
            a.droplets.push(d);
            return d;
        });
        const keysFile = path.join(cloudDir(), `keys-${d.id}.pub`);
        try {
            fs.writeFileSync(keysFile, d.authorizedKeys.map((k: string) => k + "\n").join(""), { mode: 0o600 });
            await hostOp(inputs, ["droplet-boot", d.guest, d.ipv4, `${DO_SIZES[size].memory}M`, keysFile, ...(d.ipv6 ? [d.ipv6] : [])]);
        } catch (e) {
            // No half-made droplet: the guest goes, and so does the account's record of it.
            await hostOp(inputs, ["droplet-destroy", d.guest]).catch(() => undefined);
            await withAccount((a) => void (a.droplets = a.droplets.filter((x: any) => x.id !== d.id)));
            throw new Error(`Error creating droplet: ${(e as Error).message}`);
        } finally {
            fs.rmSync(keysFile, { force: true });
        }
        await withAccount((a) => void (dropletOf(a, d.id).status = "active"));
        const s = DO_SIZES[size];
        return {
            id: String(d.id),
            outs: plain({
                ...inputs, region, size, dropletUrn: `do:droplet:${d.id}`, ipv4Address: d.ipv4, ipv4AddressPrivate: "", ipv6Address: d.ipv6 ?? "",
                status: "active", locked: false, memory: s.memory, vcpus: s.vcpus, disk: s.disk, createdAt: d.createdAt, volumeIds: [],
                ipv6: !!inputs.ipv6, monitoring: !!inputs.monitoring, __guest: d.guest,
            }),
        };
    },
    async update(id: string, olds: any, news: any) {
        const outs = { ...olds, ...news, region: olds.region, sshKeys: olds.sshKeys };
        await withAccount(async (a) => {
            const d = dropletOf(a, id);
            if (!d) throw new Error(`droplet (${id}) not found during update`);
            const size = String(news.size).toLowerCase();
            if (size !== d.size) {
                if (!(size in DO_SIZES)) throw apiError(`Error resizing droplet (${id})`, "POST", `droplets/${id}/actions`, 422, "You specified an invalid size for Droplet resize.");
                await hostOp(news, ["droplet-mem", d.guest, `${DO_SIZES[size].memory}M`]);
                d.size = size;
                Object.assign(outs, { size, memory: DO_SIZES[size].memory, vcpus: DO_SIZES[size].vcpus, disk: DO_SIZES[size].disk });
            }
            if (news.ipv6 && !d.ipv6) {
                d.ipv6 = `2001:db8:250::${Number(d.ipv4.split(".")[3]).toString(16)}`;
                await hostOp(news, ["droplet-ipv6", d.guest, d.ipv6]);
                outs.ipv6Address = d.ipv6;
                await applyFirewalls(news, a);
            }
            d.name = news.name;
            d.tags = news.tags ?? [];
        });
        return { outs: plain(outs) };
    },
    async delete(id: string, props: any) {
        const d = await withAccount((a) => {
            const d = dropletOf(a, id);
            if (d) d.status = "deleting";
            return d;
        });
        if (!d) return; // "Handle already destroyed droplets": a 404 on delete is success.
        await hostOp(props, ["droplet-destroy", d.guest]);
        await withAccount(async (a) => {
            // What the API does to a destroyed droplet's attachments.
            for (const v of a.volumes.filter((v: any) => v.dropletIds.map(String).includes(String(id)))) {
                if (v.attachment?.loop) await hostOp(props, ["volume-detach", d.guest, v.name, v.attachment.loop, v.attachment.dev]);
                v.dropletIds = [];
                delete v.attachment;
            }
            for (const r of a.reservedIps.filter((r: any) => String(r.dropletId) === String(id))) delete r.dropletId;
            for (const fw of a.firewalls) fw.dropletIds = (fw.dropletIds ?? []).filter((x: any) => String(x) !== String(id));
            a.droplets = a.droplets.filter((x: any) => String(x.id) !== String(id));
            await applyFirewalls(props, a);
        });
    },
};

/** terraform-plugin-sdk's id.PrefixedUniqueId: prefix + a timestamp + a counter. */
function prefixedUniqueId(prefix: string): string {
    const t = new Date().toISOString().replace(/[-:TZ.]/g, "");
    return `${prefix}${t}${String(Math.floor(Math.random() * 1e8)).padStart(8, "0")}`;
}

const volumeAttachmentProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.dropletId) && !(Number.isInteger(news.dropletId) && news.dropletId !== 0)) failures.push({ property: "dropletId", reason: `expected a non-zero integer droplet_id, got ${JSON.stringify(news.dropletId)}` });
        if (!isUnknown(news.volumeId) && !news.volumeId) failures.push({ property: "volumeId", reason: "volume_id must not be empty" });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, { forceNew: ["dropletId", "volumeId"], update: [] });
    },
    async create(inputs: any) {
        const { dropletId, volumeId } = inputs;
        const prefix = "Error attaching volume to droplet after retry timeout";
        await withAccount(async (a) => {
            const v = volumeOf(a, volumeId);
            if (!v) throw apiError("Error retrieving volume", "GET", `volumes/${volumeId}`, 404, "The resource you were accessing could not be found.");
            // resource_volume_attachment.go: no API call when it is already on this droplet.
            if (v.dropletIds.length > 0 && String(v.dropletIds[0]) === String(dropletId)) return;
            const wrap = (status: number, msg: string) =>
                apiError(`${prefix}: [WARN] Error attaching volume (${volumeId}) to Droplet (${dropletId})`, "POST", `volumes/${volumeId}/actions`, status, msg);
            const d = dropletOf(a, dropletId);
            if (!d || d.status !== "active") throw wrap(422, `Droplet ${dropletId} not found`);
            // Only "Droplet already has a pending event." is retried: this fails at once.
            if (v.dropletIds.length > 0) throw wrap(422, `This volume is already attached to another Droplet (${v.dropletIds[0]}).`);
            if (d.region !== v.region) throw wrap(422, "Droplet and Volume must be in the same region.");
            const [loop, dev] = (await hostOp(inputs, ["volume-attach", d.guest, v.name, v.image, v.autoMountPending ? "1" : "0"])).split("\n").pop()!.split(" ");
            v.dropletIds = [dropletId];
            v.attachment = { dropletId, loop, dev };
            v.autoMountPending = false;
        });
        return { id: prefixedUniqueId(`${dropletId}-${volumeId}-`), outs: plain({ __repo: inputs.__repo, dropletId, volumeId }) };
    },
    async delete(_id: string, props: any) {
        const { dropletId, volumeId } = props;
        await withAccount(async (a) => {
            const wrap = (status: number, msg: string) =>
                apiError(`Error detaching volume from droplet after retry timeout: [WARN] Error detaching volume (${volumeId}) from Droplet (${dropletId})`, "POST", `volumes/${volumeId}/actions`, status, msg);
            const v = volumeOf(a, volumeId);
            if (!v) throw wrap(404, "The resource you were accessing could not be found.");
            if (String(v.dropletIds[0]) !== String(dropletId)) throw wrap(422, "Attachment not found");
            const d = dropletOf(a, dropletId);
            await hostOp(props, ["volume-detach", d?.guest ?? `do-${dropletId}`, v.name, v.attachment?.loop ?? "-", v.attachment?.dev ?? "-"]);
            v.dropletIds = [];
            delete v.attachment;
        });
    },
};

const reservedIpProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.region) && !news.region) failures.push({ property: "region", reason: "region is required" });
        if (news.dropletId !== undefined) failures.push({ property: "dropletId", reason: "droplet_id on the ReservedIp is not in the testbed stand-in: use a ReservedIpAssignment" });
        if (news.ipAddress !== undefined) failures.push({ property: "ipAddress", reason: "ip_address (adopting an existing address) is not in the testbed stand-in" });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, { forceNew: ["region"], update: [], normalize: { region: (v: any) => (v === undefined ? v : String(v).toLowerCase()) } });
    },
    async create(inputs: any) {
        const region = String(inputs.region).toLowerCase();
        const ip = await withAccount((a) => {
            if (!DO_REGIONS.includes(region)) throw apiError("Error creating reserved IP", "POST", "reserved_ips", 422, "invalid region");
            const ip = freeAddress(process.env.TESTBED_DO_RESERVED_IPS || "130-140", takenAddresses(a));
            if (!ip) throw apiError("Error creating reserved IP", "POST", "reserved_ips", 422, "the testbed's reserved IP pool is exhausted (TESTBED_DO_RESERVED_IPS)");
            a.reservedIps.push({ ip, region });
            return ip;
        });
        return { id: ip, outs: plain({ __repo: inputs.__repo, region, ipAddress: ip, reservedIpUrn: `do:reservedip:${ip}` }) };
    },
    async delete(id: string, props: any) {
        await withAccount(async (a) => {
            const r = a.reservedIps.find((x: any) => x.ip === id);
            if (!r) throw apiError("Error deleting reserved IP", "DELETE", `reserved_ips/${id}`, 404, "The resource you were accessing could not be found.");
            if (r.dropletId !== undefined) {
                const d = dropletOf(a, r.dropletId);
                if (d) await hostOp(props, ["ip-unassign", d.guest, id]);
            }
            a.reservedIps = a.reservedIps.filter((x: any) => x.ip !== id);
            await applyFirewalls(props, a);
        });
    },
};

const reservedIpAssignmentProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.ipAddress) && !/^(\d{1,3}\.){3}\d{1,3}$/.test(String(news.ipAddress ?? ""))) failures.push({ property: "ipAddress", reason: `expected ip_address to contain a valid IPv4 address, got: ${news.ipAddress}` });
        if (!isUnknown(news.dropletId) && !(Number.isInteger(news.dropletId) && news.dropletId !== 0)) failures.push({ property: "dropletId", reason: `expected a non-zero integer droplet_id, got ${JSON.stringify(news.dropletId)}` });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, { forceNew: ["ipAddress", "dropletId"], update: [] });
    },
    async create(inputs: any) {
        const { ipAddress, dropletId } = inputs;
        await withAccount(async (a) => {
            const d = dropletOf(a, dropletId);
            if (!d || d.status !== "active") throw new Error(`Error waiting for droplet (${dropletId}) to be ready for reserved IP assign: droplet not found`);
            const r = a.reservedIps.find((x: any) => x.ip === ipAddress);
            if (!r) throw apiError(`Error Assigning reserved IP (${ipAddress}) to the droplet`, "POST", `reserved_ips/${ipAddress}/actions`, 404, "The resource you were accessing could not be found.");
            if (r.region !== d.region) throw apiError(`Error Assigning reserved IP (${ipAddress}) to the droplet`, "POST", `reserved_ips/${ipAddress}/actions`, 422, "The reserved IP and the Droplet must be in the same region.");
            if (r.dropletId !== undefined && String(r.dropletId) !== String(dropletId)) {
                // The Assign action moves an address that is on another droplet.
                const old = dropletOf(a, r.dropletId);
                if (old) await hostOp(inputs, ["ip-unassign", old.guest, ipAddress]);
            }
            await hostOp(inputs, ["ip-assign", d.guest, ipAddress]);
            r.dropletId = dropletId;
            await applyFirewalls(inputs, a);
        });
        return { id: prefixedUniqueId(`${dropletId}-${ipAddress}-`), outs: plain({ __repo: inputs.__repo, ipAddress, dropletId }) };
    },
    async delete(_id: string, props: any) {
        const { ipAddress, dropletId } = props;
        await withAccount(async (a) => {
            const r = a.reservedIps.find((x: any) => x.ip === ipAddress);
            if (!r) throw apiError("Error retrieving reserved IP", "GET", `reserved_ips/${ipAddress}`, 404, "The resource you were accessing could not be found.");
            if (String(r.dropletId) !== String(dropletId)) return; // "reserved IP already unassigned, removing from state"
            const d = dropletOf(a, dropletId);
            if (d) await hostOp(props, ["ip-unassign", d.guest, ipAddress]);
            delete r.dropletId;
            await applyFirewalls(props, a);
        });
    },
};

const firewallProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        return { inputs: news, failures: firewallFailures(news) };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, { forceNew: [], update: ["name", "dropletIds", "inboundRules", "outboundRules", "tags"], sets: ["dropletIds", "inboundRules", "outboundRules", "tags"] });
    },
    async create(inputs: any) {
        const id = require("crypto").randomUUID();
        await withAccount(async (a) => {
            for (const d of inputs.dropletIds ?? []) {
                if (!dropletOf(a, d)) throw apiError("Error creating firewall", "POST", "firewalls", 422, `droplet ${d} not found`);
            }
            a.firewalls.push({ id, name: inputs.name, dropletIds: inputs.dropletIds ?? [], inboundRules: inputs.inboundRules ?? [], outboundRules: inputs.outboundRules ?? [] });
            await applyFirewalls(inputs, a);
        });
        return { id, outs: plain({ ...inputs, status: "succeeded", createdAt: new Date().toISOString(), pendingChanges: [] }) };
    },
    async update(id: string, olds: any, news: any) {
        await withAccount(async (a) => {
            const fw = a.firewalls.find((f: any) => f.id === id);
            if (!fw) throw apiError("Error updating firewall", "PUT", `firewalls/${id}`, 404, "The resource you were accessing could not be found.");
            for (const d of news.dropletIds ?? []) {
                if (!dropletOf(a, d)) throw apiError("Error updating firewall", "PUT", `firewalls/${id}`, 422, `droplet ${d} not found`);
            }
            Object.assign(fw, { name: news.name, dropletIds: news.dropletIds ?? [], inboundRules: news.inboundRules ?? [], outboundRules: news.outboundRules ?? [] });
            await applyFirewalls(news, a);
        });
        return { outs: plain({ ...olds, ...news }) };
    },
    async delete(id: string, props: any) {
        await withAccount(async (a) => {
            a.firewalls = a.firewalls.filter((f: any) => f.id !== id);
            await applyFirewalls(props, a);
        });
    },
};

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

// ---------------------------------------------------------------------------------------------
// The classes the program constructs.

/** The repository, set by installDigitalOceanShim (every resource carries it as `__repo`). */
let repoRoot = "";

type Args = Record<string, unknown>;

/** Declares `names` as outputs (a dynamic resource's outputs must appear among its inputs). */
function withOutputs(args: Args, names: string[]): Args {
    const a: Args = { __repo: repoRoot, ...args };
    for (const n of names) if (!(n in a)) a[n] = undefined;
    return a;
}

export class SshKey extends pulumi.dynamic.Resource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly publicKey: pulumi.Output<string>;
    declare public readonly fingerprint: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(sshKeyProvider, name, withOutputs(args, ["name", "publicKey", "fingerprint"]), opts, "digitalocean", "SshKey");
    }
}

export class Volume extends pulumi.dynamic.Resource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly region: pulumi.Output<string>;
    declare public readonly size: pulumi.Output<number>;
    declare public readonly volumeUrn: pulumi.Output<string>;
    declare public readonly dropletIds: pulumi.Output<number[]>;
    declare public readonly filesystemType: pulumi.Output<string>;
    declare public readonly filesystemLabel: pulumi.Output<string>;
    declare public readonly description: pulumi.Output<string | undefined>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(volumeProvider, name, withOutputs(args, ["name", "region", "size", "volumeUrn", "dropletIds", "filesystemType", "filesystemLabel", "description"]), opts, "digitalocean", "Volume");
    }
}

export class Droplet extends pulumi.dynamic.Resource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly image: pulumi.Output<string>;
    declare public readonly region: pulumi.Output<string>;
    declare public readonly size: pulumi.Output<string>;
    declare public readonly dropletUrn: pulumi.Output<string>;
    declare public readonly ipv4Address: pulumi.Output<string>;
    declare public readonly ipv4AddressPrivate: pulumi.Output<string>;
    declare public readonly ipv6Address: pulumi.Output<string>;
    declare public readonly status: pulumi.Output<string>;
    declare public readonly memory: pulumi.Output<number>;
    declare public readonly vcpus: pulumi.Output<number>;
    declare public readonly disk: pulumi.Output<number>;
    declare public readonly volumeIds: pulumi.Output<string[]>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        const outs = ["name", "image", "region", "size", "dropletUrn", "ipv4Address", "ipv4AddressPrivate", "ipv6Address", "status", "memory", "vcpus", "disk", "volumeIds", "createdAt", "locked"];
        super(dropletProvider, name, withOutputs(args, outs), opts, "digitalocean", "Droplet");
    }
}

export class VolumeAttachment extends pulumi.dynamic.Resource {
    declare public readonly dropletId: pulumi.Output<number>;
    declare public readonly volumeId: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(volumeAttachmentProvider, name, withOutputs(args, ["dropletId", "volumeId"]), opts, "digitalocean", "VolumeAttachment");
    }
}

export class ReservedIp extends pulumi.dynamic.Resource {
    declare public readonly ipAddress: pulumi.Output<string>;
    declare public readonly region: pulumi.Output<string>;
    declare public readonly reservedIpUrn: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(reservedIpProvider, name, withOutputs(args, ["ipAddress", "region", "reservedIpUrn"]), opts, "digitalocean", "ReservedIp");
    }
}

export class ReservedIpAssignment extends pulumi.dynamic.Resource {
    declare public readonly ipAddress: pulumi.Output<string>;
    declare public readonly dropletId: pulumi.Output<number>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(reservedIpAssignmentProvider, name, withOutputs(args, ["ipAddress", "dropletId"]), opts, "digitalocean", "ReservedIpAssignment");
    }
}

export class Firewall extends pulumi.dynamic.Resource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly dropletIds: pulumi.Output<number[]>;
    declare public readonly status: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(firewallProvider, name, withOutputs(args, ["name", "dropletIds", "inboundRules", "outboundRules", "status", "createdAt", "pendingChanges"]), opts, "digitalocean", "Firewall");
    }
}

export interface GetSshKeysArgs {
    filters?: { key: string; values: string[]; all?: boolean; matchBy?: "exact" | "re" | "substring" }[];
    sorts?: { key: string; direction?: "asc" | "desc" }[];
}

export interface GetSshKeysResult {
    readonly id: string;
    readonly filters?: GetSshKeysArgs["filters"];
    readonly sorts?: GetSshKeysArgs["sorts"];
    readonly sshKeys: { id: number; name: string; fingerprint: string; publicKey: string }[];
}

/**
 * digitalocean.getSshKeys: the account's keys (datasource_ssh_keys.go), with the datalist's filters
 * (key, values, all, match_by exact|re|substring) and sorts. Read in the program's own process.
 */
export async function getSshKeys(args?: GetSshKeysArgs): Promise<GetSshKeysResult> {
    const account = readAccount();
    let keys = account.sshKeys.map((k: { id: number; name: string; fingerprint: string; publicKey: string }) => ({ id: k.id, name: k.name, fingerprint: k.fingerprint, publicKey: k.publicKey }));
    const field = (k: Record<string, unknown>, key: string) => String(k[key === "public_key" ? "publicKey" : key] ?? "");
    for (const f of args?.filters ?? []) {
        if (!["id", "name", "fingerprint", "public_key", "publicKey"].includes(f.key)) throw new Error(`getSshKeys: unknown filter key '${f.key}'`);
        const match = (v: string, want: string) => (f.matchBy === "re" ? new RegExp(want).test(v) : f.matchBy === "substring" ? v.includes(want) : v === want);
        keys = keys.filter((k: Record<string, unknown>) => (f.all ? f.values.every((w) => match(field(k, f.key), w)) : f.values.some((w) => match(field(k, f.key), w))));
    }
    for (const s of [...(args?.sorts ?? [])].reverse()) {
        const dir = s.direction === "desc" ? -1 : 1;
        keys = [...keys].sort((a: Record<string, unknown>, b: Record<string, unknown>) => (s.key === "id" ? (Number(a.id) - Number(b.id)) * dir : field(a, s.key).localeCompare(field(b, s.key)) * dir));
    }
    return { id: "ssh-keys", filters: args?.filters, sorts: args?.sorts, sshKeys: keys };
}

export function getSshKeysOutput(args?: GetSshKeysArgs): pulumi.Output<GetSshKeysResult> {
    return pulumi.output(getSshKeys(args));
}

/** The exports of the stand-in: anything else is an error naming this file. */
const exportsOfStandIn: Record<string, unknown> = {
    SshKey, Volume, Droplet, VolumeAttachment, ReservedIp, ReservedIpAssignment, Firewall, getSshKeys, getSshKeysOutput,
    types: { input: {}, output: {}, enums: {} },
};

/** A module object whose unknown members throw instead of being undefined. */
export const digitaloceanModule = strictModule("@pulumi/digitalocean", "testbed/deploy/digitaloceanShim.ts", exportsOfStandIn);

/**
 * Makes `require("@pulumi/digitalocean")`, resolved from `repo`, return the stand-in. `repo` is also
 * where testbed/cloud/do-host.sh is found (recorded in every resource as `__repo`).
 */
export function installDigitalOceanShim(repo: string): string {
    repoRoot = repo;
    return installModule("@pulumi/digitalocean", repo, digitaloceanModule);
}

/** For tests: the providers and pure helpers. */
export {
    sshKeyProvider, volumeProvider, dropletProvider, volumeAttachmentProvider, reservedIpProvider, reservedIpAssignmentProvider, firewallProvider,
    parsePublicKey, renderFirewall, firewallFailures, portRange, freeAddress, strictModule,
};
