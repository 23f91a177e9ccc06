// The path Philly Mesh runs (a new droplet, Cloudflare DNS) as a user meets it: a key already in the
// account, records already in the zone, a volume that grows, an image that changes.
import { BASE_CONFIG, SECRETS, runProgram, ProgramRun } from "./harness";

const COMMAND = "command:remote:Command";
const RECORD = "cloudflare:index/dnsRecord:DnsRecord";
const OWNER = "managed by phillymesh-chat (pulumi stack test)";
const FINGERPRINT = "d7:60:b8:58:4d:11:12:8e:bf:7f:90:b2:e1:01:77:a1";
const ACCOUNT = [
    { id: 4100, name: "laptop", fingerprint: "01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef", publicKey: "ssh-ed25519 AAAA laptop" },
    { id: 4242, name: "chat-deploy", fingerprint: FINGERPRINT, publicKey: "ssh-ed25519 AAAA deploy" },
];

function inputs(run: ProgramRun) {
    return new Map(run.resources.map((r) => [`${r.type}::${r.name}`, JSON.stringify(r.inputs)]));
}

describe("an SSH key already in the DigitalOcean account (doSshKey)", () => {
    const { sshPublicKey, ...withoutPublicKey } = BASE_CONFIG;
    void sshPublicKey;

    test.each([
        ["its fingerprint", FINGERPRINT],
        ["its id", "4242"],
    ])("by %s: no new key is made (DigitalOcean would refuse it with 422), the droplet gets that key", async (_what, ref) => {
        const run = await runProgram({ ...withoutPublicKey, doSshKey: ref }, SECRETS, { cloud: { accountKeys: ACCOUNT } });
        expect(run.ofType("digitalocean:index/sshKey:SshKey")).toEqual([]);
        expect(run.byName("chat-droplet").inputs.sshKeys).toEqual([FINGERPRINT]);
        expect(run.calls.map((c) => c.token)).toContain("digitalocean:index/getSshKeys:getSshKeys");
    });

    test("a key that is not in the account fails the preview, naming doSshKey and the keys there are", async () => {
        const err = await runProgram({ ...withoutPublicKey, doSshKey: "9999" }, SECRETS, { preview: true, cloud: { accountKeys: ACCOUNT } }).catch(
            (e: Error) => e,
        );
        expect(String(err)).toContain("phillymesh-chat:doSshKey 9999 is not an SSH key of this DigitalOcean account");
        expect(String(err)).toContain(`chat-deploy (${FINGERPRINT}, id 4242)`);
    });

    test("neither key set: the error names both ways", async () => {
        await expect(runProgram(withoutPublicKey, SECRETS, { preview: true })).rejects.toThrow(
            /phillymesh-chat:sshPublicKey or phillymesh-chat:doSshKey is required when hosting is digitalocean/,
        );
    });
});

describe("records already in the Cloudflare zone (the hand-built server's)", () => {
    const handBuilt = [
        { id: "a1f0", name: "matrix.phillymesh.net", type: "A", content: "198.51.100.7", comment: "" },
        { id: "b2e1", name: "chat.phillymesh.net", type: "CNAME", content: "old.phillymesh.net" },
        {
            id: "c3d2",
            name: "_matrix._tcp.phillymesh.net",
            type: "SRV",
            content: "10 5 8448 matrix.phillymesh.net",
            data: { priority: 10, weight: 5, port: 8448, target: "matrix.phillymesh.net" },
        },
        // Not in the way: another name, a CAA for another CA, and a record this stack made.
        { id: "d4c3", name: "www.phillymesh.net", type: "A", content: "198.51.100.8" },
        { id: "e5b4", name: "phillymesh.net", type: "CAA", data: { flags: 0, tag: "issue", value: "pki.goog" } },
        {
            id: "f6a5",
            name: "_matrix-fed._tcp.phillymesh.net",
            type: "SRV",
            comment: OWNER,
            data: { priority: 10, weight: 5, port: 8448, target: "matrix.phillymesh.net" },
        },
    ];

    test("preview fails naming each record in the way (type, name, content, id) and both ways out; nothing is declared in the zone", async () => {
        const err = String(await runProgram(BASE_CONFIG, SECRETS, { preview: true, cloud: { zoneRecords: handBuilt } }).catch((e: Error) => e));
        expect(err).toContain("already holds 3 records that this stack would add beside");
        expect(err).toContain("A matrix.phillymesh.net 198.51.100.7 (record id a1f0)");
        expect(err).toContain("CNAME chat.phillymesh.net old.phillymesh.net (record id b2e1)");
        expect(err).toContain("SRV _matrix._tcp.phillymesh.net 10 5 8448 matrix.phillymesh.net (record id c3d2)");
        for (const id of ["d4c3", "e5b4", "f6a5"]) expect(err).not.toContain(`record id ${id}`);
        const zone = BASE_CONFIG.cloudflareZoneId;
        expect(err).toContain(
            `curl -X DELETE -H "Authorization: Bearer $CLOUDFLARE_API_TOKEN" https://api.cloudflare.com/client/v4/zones/${zone}/dns_records/a1f0`,
        );
        expect(err).toContain(
            `pulumi import --generate-code=false --protect=false --parent 'chatDns=urn:pulumi:test::phillymesh-chat::phillymesh-chat:index:ChatDns::chat' cloudflare:index/dnsRecord:DnsRecord chat-a-matrix-phillymesh-net '${zone}/a1f0'`,
        );
        expect(err).toContain(`--data '{"comment":"${OWNER}"}'`);
        // A CNAME has no record of ours to take over: only deleting it helps.
        expect(err.split("\n").filter((l) => l.includes("record id b2e1") || l.includes("/b2e1'")).length).toBe(1);
    });

    test("the stack's own records (marked with its comment) are no conflict: a second run passes", async () => {
        const ours = handBuilt.filter((r) => r.id === "f6a5" || r.id === "d4c3" || r.id === "e5b4");
        const run = await runProgram(BASE_CONFIG, SECRETS, { preview: true, cloud: { zoneRecords: ours } });
        expect(run.ofType(RECORD)).toHaveLength(8);
    });
});

describe("growing the volume", () => {
    test("volumeSizeGb resizes the volume in place and re-runs the base step only (which grows the filesystem)", async () => {
        const before = inputs(await runProgram());
        const after = inputs(await runProgram({ ...BASE_CONFIG, volumeSizeGb: "25" }));
        const changed = [...before.keys()].filter((k) => before.get(k) !== after.get(k));
        expect(changed.sort()).toEqual(["command:remote:Command::chat-base-run", "digitalocean:index/volume:Volume::chat-data"]);
        expect(JSON.parse(after.get(`${COMMAND}::chat-base-run`)!).stdin).toContain("export VOLUME_SIZE_GB='25'");
    });
});

describe("a new image", () => {
    test("changes the droplet's image and nothing that outlives it", async () => {
        const before = inputs(await runProgram());
        const after = inputs(await runProgram({ ...BASE_CONFIG, dropletImage: "debian-12-x64" }));
        const changed = [...before.keys()].filter((k) => before.get(k) !== after.get(k));
        // The provider then replaces the droplet; the engine carries the rest (drilled on the testbed).
        expect(changed).toEqual(["digitalocean:index/droplet:Droplet::chat-droplet"]);
    });
});

describe("a stack deployed before records carried the owner comment", () => {
    test("its own records (as its last dnsRecords output lists them) are no conflict; a foreign one still is", async () => {
        const published = [
            { name: "matrix.phillymesh.net", type: "A", content: "203.0.113.10" },
            { name: "_matrix._tcp.phillymesh.net", type: "SRV", priority: 10, weight: 5, port: 8448, target: "matrix.phillymesh.net" },
        ];
        const zone = [
            { id: "r1", name: "matrix.phillymesh.net", type: "A", content: "203.0.113.10", comment: "" },
            { id: "r2", name: "_matrix._tcp.phillymesh.net", type: "SRV", data: { priority: 10, weight: 5, port: 8448, target: "matrix.phillymesh.net" } },
        ];
        const run = await runProgram(BASE_CONFIG, SECRETS, { preview: true, cloud: { zoneRecords: zone, lastOutputs: { dnsRecords: published } } });
        expect(run.ofType(RECORD)).toHaveLength(8);
        const foreign = [...zone, { id: "r3", name: "matrix.phillymesh.net", type: "A", content: "198.51.100.7" }];
        const err = String(
            await runProgram(BASE_CONFIG, SECRETS, { preview: true, cloud: { zoneRecords: foreign, lastOutputs: { dnsRecords: published } } }).catch(
                (e: Error) => e,
            ),
        );
        expect(err).toContain("already holds 1 record that");
        expect(err).toContain("(record id r3)");
    });
});
