// The testbed's stand-ins for @pulumi/digitalocean and @pulumi/cloudflare (testbed/deploy/digitalocean/, cloudflare/):
// what they refuse and what they replace, checked without a testbed. Each test works on a throwaway
// "account" in a temporary TESTBED_DIR; nothing here boots a guest or touches the testbed DNS
// (TESTBED_CF_DNS=off), and every case that would need the machine fails before reaching it.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as dox from "../testbed/deploy/digitalocean";
import * as cfx from "../testbed/deploy/cloudflare";

const ED25519 = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBQsr39M9y3/cHQC6497ykSWWSEx905bKYOmvl4st+co test";
const ED25519_MD5 = "7c:83:b9:c2:5a:26:cc:bd:e7:bb:67:01:98:9b:39:3c"; // ssh-keygen -l -E md5
const RSA =
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDNAKStjxHtX6NEqhvoRf6/9dcQrLrapIJjocMzz6PDP/DlCtWy6l4sqenw7TcpPx9B8RZXDGK1E7RwSryVv7jCkjAWxj12g3zmQ3YCiRRvMGIvScy9+cUsVQvS/4JV26XXN48EzG85RJZnIFz7q7BmMRYoyoa9/hr1PlRtykOkgDfihHD5k1Tm6vuDTK2RqlCXATlmPhHBSNXxts0Y6h77jdaqfD4d7qVnbCD5g77yebSAzPnvi93atqGhdJ0o22uyhXzkKoFr5QYMRJ7NyPYsDnvtC1mRoTeKhXLNSBjTENEC/GopiLgOHDTEXpugSK58+gWz8uwoz09V91gV4I9z rsa";
const RSA_MD5 = "68:dc:bc:5a:d3:7e:0a:06:b5:9a:24:e9:2b:15:43:3a";
const NOWHERE = "/nonexistent-repo"; // a host operation would fail loudly: none must be reached

let dir: string;
const saved = { TESTBED_DIR: process.env.TESTBED_DIR, TESTBED_REPO: process.env.TESTBED_REPO, TESTBED_CF_DNS: process.env.TESTBED_CF_DNS };
beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "standins-"));
    process.env.TESTBED_DIR = dir;
    process.env.TESTBED_REPO = NOWHERE;
    process.env.TESTBED_CF_DNS = "off";
});
afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
});

function account(a: Record<string, unknown>): void {
    fs.mkdirSync(path.join(dir, "cloud"), { recursive: true });
    fs.writeFileSync(
        path.join(dir, "cloud", "do-account.json"),
        JSON.stringify({ sshKeys: [], droplets: [], volumes: [], reservedIps: [], firewalls: [], ...a }),
    );
}
function readAccount(): any {
    return JSON.parse(fs.readFileSync(path.join(dir, "cloud", "do-account.json"), "utf8"));
}

describe("DigitalOcean stand-in: SshKey", () => {
    test("the fingerprint is DigitalOcean's: MD5 of the key blob in colon hex (ed25519 and RSA)", () => {
        expect((dox.parsePublicKey(ED25519) as { fingerprint: string }).fingerprint).toBe(ED25519_MD5);
        expect((dox.parsePublicKey(`  ${RSA}\n`) as { fingerprint: string }).fingerprint).toBe(RSA_MD5);
        expect(typeof dox.parsePublicKey("ssh-ed25519 AAAAB3NzaC1yc2EAAAADAQABAAAB x")).toBe("string"); // blob of another type
        expect(typeof dox.parsePublicKey("-----BEGIN OPENSSH PRIVATE KEY-----")).toBe("string");
    });

    test("a key already in the account: 422 SSH Key is already in use on your account", async () => {
        const first = await dox.sshKeyProvider.create!({ name: "a", publicKey: ED25519 });
        expect(first.outs.fingerprint).toBe(ED25519_MD5);
        expect(first.id).toMatch(/^\d+$/);
        await expect(dox.sshKeyProvider.create!({ name: "b", publicKey: `${ED25519}\n` })).rejects.toThrow(
            /Error creating SSH Key: POST https:\/\/api\.digitalocean\.com\/v2\/account\/keys: 422 \(request "[0-9a-f-]+"\) SSH Key is already in use on your account/,
        );
        expect(readAccount().sshKeys).toHaveLength(1);
    });

    test("publicKey forces a new key (whitespace aside); a new name is an update", async () => {
        const olds = { name: "a", publicKey: ED25519, fingerprint: ED25519_MD5 };
        expect(await dox.sshKeyProvider.diff!("1", olds, { name: "a", publicKey: ` ${ED25519}\n` })).toEqual({ changes: false, replaces: [] });
        expect(await dox.sshKeyProvider.diff!("1", olds, { name: "a", publicKey: RSA })).toEqual({ changes: true, replaces: ["publicKey"] });
        expect(await dox.sshKeyProvider.diff!("1", olds, { name: "b", publicKey: ED25519 })).toEqual({ changes: true, replaces: [] });
    });

    test("getSshKeys lists the account's keys with numeric ids, and filters and sorts as the datalist does", async () => {
        await dox.sshKeyProvider.create!({ name: "zeta", publicKey: ED25519 });
        await dox.sshKeyProvider.create!({ name: "alpha", publicKey: RSA });
        const all = await dox.getSshKeys();
        expect(all.sshKeys.map((k) => [typeof k.id, k.name, k.fingerprint])).toEqual([
            ["number", "zeta", ED25519_MD5],
            ["number", "alpha", RSA_MD5],
        ]);
        expect((await dox.getSshKeys({ filters: [{ key: "fingerprint", values: [RSA_MD5] }] })).sshKeys.map((k) => k.name)).toEqual(["alpha"]);
        expect((await dox.getSshKeys({ sorts: [{ key: "name" }] })).sshKeys.map((k) => k.name)).toEqual(["alpha", "zeta"]);
    });
});

describe("DigitalOcean stand-in: Volume", () => {
    const olds = { name: "chat-data", region: "nyc3", size: 10, initialFilesystemType: "ext4", description: "d" };
    test.each([
        ["region", { region: "ams3" }],
        ["name", { name: "other-data" }],
        ["description", { description: "new words" }],
        ["initialFilesystemType", { initialFilesystemType: "xfs" }],
    ])("%s forces a new volume (resource_volume.go ForceNew)", async (key, change) => {
        expect(await dox.volumeProvider.diff!("v", olds, { ...olds, ...change })).toEqual({ changes: true, replaces: [key] });
    });

    test("size grows in place; a region in capitals is the same region", async () => {
        expect(await dox.volumeProvider.diff!("v", olds, { ...olds, size: 20 })).toEqual({ changes: true, replaces: [] });
        expect(await dox.volumeProvider.diff!("v", olds, { ...olds, region: "NYC3" })).toEqual({ changes: false, replaces: [] });
    });

    test("shrinking fails at plan time, as the provider's CustomizeDiff does", async () => {
        const r = await dox.volumeProvider.check!(olds, { ...olds, size: 5 });
        expect(r.failures).toEqual([{ property: "size", reason: "volumes `size` can only be expanded and not shrunk" }]);
        expect((await dox.volumeProvider.check!(olds, { ...olds, size: 11 })).failures).toEqual([]);
    });

    test("an attached volume cannot be deleted: 409", async () => {
        account({ volumes: [{ id: "v1", name: "x", region: "nyc3", size: 1, image: "/nope", dropletIds: [500000001] }] });
        await expect(dox.volumeProvider.delete!("v1", {})).rejects.toThrow(/409 \(request "[^"]+"\) attached volume cannot be deleted/);
    });

    test("a second volume of the same name in the region: 409 already exists", async () => {
        account({ volumes: [{ id: "v1", name: "chat-data", region: "nyc3", size: 1, image: "/nope", dropletIds: [] }] });
        await expect(dox.volumeProvider.create!({ name: "chat-data", region: "nyc3", size: 1 })).rejects.toThrow(
            /POST https:\/\/api\.digitalocean\.com\/v2\/volumes: 409 .* already exists/,
        );
    });
});

describe("DigitalOcean stand-in: Droplet", () => {
    const olds = { name: "chat", region: "nyc3", size: "s-1vcpu-1gb", image: "debian-13-x64", ipv6: true, monitoring: true, sshKeys: ["aa:bb"], tags: ["t"] };
    test.each([
        ["image", { image: "debian-12-x64" }],
        ["region", { region: "sfo3" }],
        ["sshKeys", { sshKeys: ["cc:dd"] }],
        ["monitoring", { monitoring: false }],
        ["ipv6", { ipv6: false }],
    ])("%s forces a new droplet (resource_droplet.go)", async (key, change) => {
        expect((await dox.dropletProvider.diff!("1", olds, { ...olds, ...change })).replaces).toEqual([key]);
    });

    test("name, size, tags and ipv6 false -> true are updates; order of sets and an omitted region are no change", async () => {
        for (const change of [{ name: "x" }, { size: "s-1vcpu-2gb" }, { tags: ["t", "u"] }]) {
            expect(await dox.dropletProvider.diff!("1", olds, { ...olds, ...change })).toEqual({ changes: true, replaces: [] });
        }
        expect(await dox.dropletProvider.diff!("1", { ...olds, ipv6: false }, olds)).toEqual({ changes: true, replaces: [] });
        expect(await dox.dropletProvider.diff!("1", { ...olds, sshKeys: ["b", "a"] }, { ...olds, sshKeys: ["a", "b"], region: undefined })).toEqual({
            changes: false,
            replaces: [],
        });
    });

    test("an unknown image, or a key not in the account, fails as the API does, before any guest is booted", async () => {
        account({});
        const inputs = { name: "chat", region: "nyc3", size: "s-1vcpu-1gb", image: "ubuntu-18-04-x64", sshKeys: [] };
        await expect(dox.dropletProvider.create!(inputs)).rejects.toThrow(
            /Error creating droplet: POST https:\/\/api\.digitalocean\.com\/v2\/droplets: 422 \(request "[^"]+"\) You specified an invalid image for Droplet creation\./,
        );
        await expect(dox.dropletProvider.create!({ ...inputs, image: "debian-13-x64", sshKeys: [ED25519_MD5] })).rejects.toThrow(`422 (request`);
        await expect(dox.dropletProvider.create!({ ...inputs, image: "debian-13-x64", sshKeys: [ED25519_MD5] })).rejects.toThrow(
            `${ED25519_MD5} are invalid key identifiers for Droplet creation.`,
        );
        expect(readAccount().droplets).toEqual([]);
    });

    test("user_data is refused at plan time (no cloud-init in the testbed)", async () => {
        expect((await dox.dropletProvider.check!({}, { ...olds, userData: "#cloud-config" })).failures?.map((f) => f.property)).toEqual(["userData"]);
    });
});

describe("DigitalOcean stand-in: attachments, reserved IPs, firewall", () => {
    test("an attachment and a reserved IP assignment are replaced when either input changes", async () => {
        for (const p of [dox.volumeAttachmentProvider, dox.reservedIpAssignmentProvider]) {
            const olds = { dropletId: 1, volumeId: "v", ipAddress: "10.250.0.130" };
            expect(await p.diff!("x", olds, olds)).toEqual({ changes: false, replaces: [] });
            expect((await p.diff!("x", olds, { ...olds, dropletId: 2 })).replaces).toEqual(["dropletId"]);
        }
        expect((await dox.volumeAttachmentProvider.diff!("x", { dropletId: 1, volumeId: "v" }, { dropletId: 1, volumeId: "w" })).replaces).toEqual([
            "volumeId",
        ]);
    });

    test("attaching a volume that is on another droplet fails at once with 422 (no retry, nothing touched)", async () => {
        const droplet = (id: number, ip: string) => ({
            id,
            name: `d${id}`,
            guest: `do-${id}`,
            ipv4: ip,
            region: "nyc3",
            size: "s-1vcpu-1gb",
            status: "active",
        });
        account({
            droplets: [droplet(500000001, "10.250.0.100"), droplet(500000002, "10.250.0.101")],
            volumes: [
                {
                    id: "v1",
                    name: "chat-data",
                    region: "nyc3",
                    size: 1,
                    image: "/nope",
                    dropletIds: [500000001],
                    attachment: { dropletId: 500000001, loop: "/dev/loop9", dev: "sda" },
                },
            ],
        });
        const t0 = Date.now();
        await expect(dox.volumeAttachmentProvider.create!({ dropletId: 500000002, volumeId: "v1" })).rejects.toThrow(
            /Error attaching volume to droplet after retry timeout: \[WARN\] Error attaching volume \(v1\) to Droplet \(500000002\): POST https:\/\/api\.digitalocean\.com\/v2\/volumes\/v1\/actions: 422 \(request "[^"]+"\) This volume is already attached/,
        );
        expect(Date.now() - t0).toBeLessThan(2000);
        expect(readAccount().volumes[0].dropletIds).toEqual([500000001]);
        // Already on that droplet: the provider makes no API call at all.
        await expect(dox.volumeAttachmentProvider.create!({ dropletId: 500000001, volumeId: "v1" })).resolves.toMatchObject({
            id: expect.stringMatching(/^500000001-v1-/),
        });
        // Detaching from a droplet it is not on: 422 Attachment not found.
        await expect(dox.volumeAttachmentProvider.delete!("x", { dropletId: 500000002, volumeId: "v1" })).rejects.toThrow(
            /422 \(request "[^"]+"\) Attachment not found/,
        );
    });

    test("firewall rules are checked as the provider checks them, and nothing forces a new firewall", async () => {
        expect(dox.firewallFailures({ name: "f" }).map((f) => f.reason)).toContain("At least one rule must be specified");
        expect(dox.firewallFailures({ name: "f", inboundRules: [{ protocol: "tcp", sourceAddresses: ["0.0.0.0/0"] }] }).map((f) => f.reason)).toContain(
            "`port_range` of inbound rules is required if protocol is `tcp` or `udp`",
        );
        expect(dox.firewallFailures({ name: "f", inboundRules: [{ protocol: "icmp", sourceAddresses: ["0.0.0.0/0", "::/0"] }] })).toEqual([]);
        const rules = [
            { protocol: "tcp", portRange: "22", sourceAddresses: ["0.0.0.0/0"] },
            { protocol: "icmp", sourceAddresses: ["0.0.0.0/0"] },
        ];
        const olds = { name: "f", dropletIds: [1], inboundRules: rules, outboundRules: [] };
        expect(await dox.firewallProvider.diff!("f", olds, { ...olds, inboundRules: [...rules].reverse() })).toEqual({ changes: false, replaces: [] });
        expect(await dox.firewallProvider.diff!("f", olds, { ...olds, dropletIds: [2], inboundRules: rules.slice(0, 1) })).toEqual({
            changes: true,
            replaces: [],
        });
    });

    test("the nftables rendering: per-droplet chains on its own and reserved addresses, stateful, drop by default", () => {
        const nft = dox.renderFirewall({
            droplets: [{ id: 7, ipv4: "10.250.0.100", ipv6: "2001:db8:250::64" }],
            reservedIps: [{ ip: "10.250.0.130", dropletId: 7 }],
            firewalls: [
                {
                    dropletIds: [7],
                    inboundRules: [
                        { protocol: "tcp", portRange: "22", sourceAddresses: ["10.250.0.1/32"] },
                        { protocol: "tcp", portRange: "443", sourceAddresses: ["0.0.0.0/0", "::/0"] },
                        { protocol: "icmp", sourceAddresses: ["0.0.0.0/0"] },
                    ],
                    outboundRules: [{ protocol: "udp", portRange: "1-65535", destinationAddresses: ["0.0.0.0/0"] }],
                },
            ],
        });
        expect(nft).toContain("ip daddr { 10.250.0.100, 10.250.0.130 } jump in_7");
        expect(nft).toContain("ip6 daddr { 2001:db8:250::64 } jump in_7");
        expect(nft).toContain("ip saddr { 10.250.0.1/32 } tcp dport 22 return");
        expect(nft).toContain("ip6 saddr { ::/0 } tcp dport 443 return");
        expect(nft).toContain("ip protocol icmp ip saddr { 0.0.0.0/0 } return");
        expect(nft).toContain("ip daddr { 0.0.0.0/0 } udp dport 1-65535 return");
        expect(nft).toContain("ct state established,related return");
        expect(nft.match(/counter drop/g)).toHaveLength(2);
        expect(dox.renderFirewall({ droplets: [], reservedIps: [], firewalls: [] })).toBe("");
    });

    test("the module throws for anything it does not stand in for", () => {
        expect(() => (dox.digitaloceanModule as any).LoadBalancer).toThrow(/@pulumi\/digitalocean\.LoadBalancer is not in the testbed stand-in/);
        expect((dox.digitaloceanModule as any).__esModule).toBe(true);
        expect(typeof (dox.digitaloceanModule as any).Droplet).toBe("function");
    });
});

describe("Cloudflare stand-in: DnsRecord", () => {
    const ZONE = "0123456789abcdef0123456789abcdef";
    const zones = () => {
        fs.mkdirSync(path.join(dir, "cloud"), { recursive: true });
        fs.writeFileSync(path.join(dir, "cloud", "cf-zones.json"), JSON.stringify({ [ZONE]: "phillymesh.test" }));
    };
    const a = { zoneId: ZONE, name: "matrix.phillymesh.test", type: "A", ttl: 1, content: "10.250.0.130", proxied: false };
    const srv = {
        zoneId: ZONE,
        name: "_matrix-fed._tcp.phillymesh.test",
        type: "SRV",
        ttl: 1,
        proxied: false,
        priority: 10,
        data: { priority: 10, weight: 5, port: 8448, target: "matrix.phillymesh.test" },
    };

    test("zone_id and type are RequiresReplace; everything else is an update; SRV's computed content is no diff", async () => {
        const p = cfx.dnsRecordProvider;
        expect(await p.diff!("r", a, { ...a, zoneId: "f".repeat(32) })).toEqual({ changes: true, replaces: ["zoneId"] });
        expect(await p.diff!("r", a, { ...a, type: "AAAA", content: "2001:db8::1" })).toEqual({ changes: true, replaces: ["type"] });
        expect(await p.diff!("r", a, { ...a, content: "10.250.0.131" })).toEqual({ changes: true, replaces: [] });
        expect(await p.diff!("r", a, { ...a, name: "chat.phillymesh.test" })).toEqual({ changes: true, replaces: [] });
        expect(await p.diff!("r", { ...srv, content: "5 8448 matrix.phillymesh.test" }, srv)).toEqual({ changes: false, replaces: [] });
    });

    test("content and data together fail at plan time (ConflictsWith)", async () => {
        const r = await cfx.dnsRecordProvider.check!({}, { ...srv, content: "5 8448 matrix.phillymesh.test" });
        expect(r.failures).toEqual([
            { property: "content", reason: 'Invalid Attribute Combination: Attribute "data" cannot be specified when "content" is specified' },
        ]);
    });

    test("v6's SRV shape is required; a proxied SRV and a bad A are refused as the API refuses them", () => {
        const n = (r: object) => () => cfx.normalizeRecord(r, "phillymesh.test", "POST", `zones/${ZONE}/dns_records`);
        expect(n(srv)()).toMatchObject({ content: "5 8448 matrix.phillymesh.test", priority: 10, data: { port: 8448 } });
        expect(n({ ...srv, data: undefined, content: "10 5 8448 matrix.phillymesh.test" })).toThrow(
            /"code":1004,"message":"DNS Validation Error".*SRV records need data/,
        );
        expect(n({ ...srv, proxied: true })).toThrow(/"code":9004,"message":"This record type cannot be proxied\."/);
        expect(n({ ...a, content: "10.250.0.300" })).toThrow(/Content for A record must be a valid IPv4 address/);
        expect(n({ ...a, type: "AAAA", content: "10.250.0.1" })).toThrow(/valid IPv6/);
        expect(n({ ...srv, name: "matrix.phillymesh.test" })).toThrow(/_service\._proto/);
        expect(n({ ...a, ttl: 30 })).toThrow(/TTL must be between 60 and 86400/);
        expect(n({ ...a, type: "LOC" })).toThrow(/not in the testbed stand-in/);
    });

    test("names are made fully qualified in the zone, as the API does", () => {
        expect(cfx.fqdnIn("@", "phillymesh.test")).toBe("phillymesh.test");
        expect(cfx.fqdnIn("matrix", "phillymesh.test")).toBe("matrix.phillymesh.test");
        expect(cfx.fqdnIn("Matrix.PhillyMesh.test.", "phillymesh.test")).toBe("matrix.phillymesh.test");
        expect(cfx.fqdnIn("matrix.phillymesh.net", "phillymesh.test")).toBe("matrix.phillymesh.net.phillymesh.test");
    });

    test("an identical record: 81058; a CNAME beside an A: 81053; an A beside a CNAME: 81054; a second A with other content is allowed", async () => {
        zones();
        const p = cfx.dnsRecordProvider;
        const first = await p.create!(a);
        expect(first.id).toMatch(/^[0-9a-f]{32}$/);
        await expect(p.create!(a)).rejects.toThrow(
            `failed to make http request: POST "https://api.cloudflare.com/client/v4/zones/${ZONE}/dns_records": 400 Bad Request {"success":false,"errors":[{"code":81058,"message":"An identical record already exists."}],"messages":[],"result":null}`,
        );
        await expect(p.create!({ ...a, type: "CNAME", content: "elsewhere.phillymesh.test" })).rejects.toThrow(
            /"code":81053,"message":"An A, AAAA, or CNAME record with that host already exists\."/,
        );
        await p.create!({ ...a, name: "www.phillymesh.test", type: "CNAME", content: "matrix.phillymesh.test" });
        await expect(p.create!({ ...a, name: "www.phillymesh.test" })).rejects.toThrow(/"code":81054/);
        await expect(p.create!({ ...a, content: "10.250.0.131" })).resolves.toBeDefined(); // round-robin, as Cloudflare allows
        await p.create!(srv);
        await expect(p.create!(srv)).rejects.toThrow(/81058/);
        // An update may not make a record identical to another one either.
        const other = await p.create!({ ...a, content: "10.250.0.132" });
        await expect(p.update!(other.id, other.outs, a)).rejects.toThrow(/81058/);
    });

    test("a zone the account does not have: 7003, at create and in getDnsRecords", async () => {
        zones();
        await expect(cfx.dnsRecordProvider.create!({ ...a, zoneId: "f".repeat(32) })).rejects.toThrow(
            /"code":7003,"message":"Could not route to \/zones\/f{32}\/dns_records/,
        );
        await expect(cfx.getDnsRecords({ zoneId: "f".repeat(32) })).rejects.toThrow(/7003/);
    });

    test("getDnsRecords finds the zone's records by exact name (case-insensitive) and type, with their ids and comments", async () => {
        zones();
        const made = await cfx.dnsRecordProvider.create!({ ...a, comment: "managed by x" });
        await cfx.dnsRecordProvider.create!(srv);
        await cfx.dnsRecordProvider.create!({
            zoneId: ZONE,
            name: "phillymesh.test",
            type: "CAA",
            ttl: 1,
            data: { flags: 0, tag: "issue", value: "letsencrypt.org" },
        });
        const r = await cfx.getDnsRecords({ zoneId: ZONE, name: { exact: "MATRIX.phillymesh.test" } });
        expect(r.results).toEqual([
            expect.objectContaining({
                id: made.id,
                name: "matrix.phillymesh.test",
                type: "A",
                content: "10.250.0.130",
                comment: "managed by x",
                ttl: 1,
                proxied: false,
            }),
        ]);
        const caa = await cfx.getDnsRecords({ zoneId: ZONE, name: { exact: "phillymesh.test" }, type: "CAA" });
        expect(caa.results.map((x) => [x.content, x.data])).toEqual([['0 issue "letsencrypt.org"', { flags: 0, tag: "issue", value: "letsencrypt.org" }]]);
        expect((await cfx.getDnsRecords({ zoneId: ZONE })).results).toHaveLength(3);
    });

    test("the zone is served by the testbed DNS in dns-load.sh's shape", () => {
        expect(
            cfx.dnsLoadSet([
                { name: "x.test", type: "A", content: "10.250.0.1", id: "i", ttl: 1 },
                { name: "_a._tcp.x.test", type: "SRV", content: "1 2 t", data: { priority: 1 } },
            ]),
        ).toEqual([
            { name: "x.test", type: "A", content: "10.250.0.1" },
            { name: "_a._tcp.x.test", type: "SRV", data: { priority: 1 } },
        ]);
    });

    test("the module throws for anything it does not stand in for", () => {
        expect(() => (cfx.cloudflareModule as any).Record).toThrow(/@pulumi\/cloudflare\.Record is not in the testbed stand-in/);
    });
});
