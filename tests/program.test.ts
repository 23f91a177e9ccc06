// The whole program under strict mocks, as `pulumi preview` and `pulumi up` run it, asserting what an
// operator would notice: the server, the open ports, the DNS records, the order of the steps, that
// secrets stay secret, and what a version bump touches.
import { BASE_CONFIG, SECRETS, runProgram, ProgramRun, Recorded } from "./harness";
import { spawnSync } from "child_process";
import { refreshFiles } from "../components/synapse";

const COMMAND = "command:remote:Command";
const RECORD = "cloudflare:index/dnsRecord:DnsRecord";

function step(run: ProgramRun, name: string): Recorded {
    return run.byName(`chat-${name}-run`);
}

/** The provisioning steps (every Command but the data-release one). */
function steps(run: ProgramRun): Recorded[] {
    return run.ofType(COMMAND).filter((c) => c.name.endsWith("-run"));
}

describe.each([
    ["update", false],
    ["preview", true],
])("the DigitalOcean + Cloudflare stack (%s)", (_mode, preview) => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram(BASE_CONFIG, SECRETS, { preview });
    });

    test("a disposable 1 GB Debian droplet (not protected, so a new image can replace it) whose replace-on-change inputs do not follow config edits", () => {
        const droplet = run.byName("chat-droplet");
        expect(droplet.inputs.size).toBe("s-1vcpu-1gb");
        expect(droplet.inputs.image).toBe("debian-13-x64");
        expect(droplet.inputs.region).toBe("nyc3");
        expect(droplet.inputs.userData).toBeUndefined();
        expect(droplet.protect).toBe(false);
        expect(droplet.ignoreChanges).toContain("sshKeys");
        // A new deploy key from sshPublicKey, and the droplet created with it.
        expect(run.byName("chat-ssh-key").inputs.publicKey).toBe(BASE_CONFIG.sshPublicKey);
        if (!preview) expect(droplet.inputs.sshKeys).toEqual(["aa:bb:cc"]);
    });

    test("what outlives the droplet is protected: the data volume and the reserved IP", () => {
        const volume = run.byName("chat-data");
        expect(volume.protect).toBe(true);
        expect(volume.inputs.initialFilesystemType).toBe("ext4");
        expect(volume.inputs.size).toBe(10);
        expect(run.byName("chat-ip").protect).toBe(true);
    });

    test("the volume and the address move by detaching/unassigning first (DigitalOcean allows one droplet at a time)", () => {
        const attachment = run.byName("chat-data-attachment");
        const assignment = run.byName("chat-ip-assignment");
        expect(run.ofType("digitalocean:index/volumeAttachment:VolumeAttachment")).toEqual([attachment]);
        expect(run.ofType("digitalocean:index/reservedIpAssignment:ReservedIpAssignment")).toEqual([assignment]);
        expect(attachment.deleteBeforeReplace).toBe(true);
        expect(assignment.deleteBeforeReplace).toBe(true);
        expect(attachment.protect || assignment.protect).toBe(false);
    });

    test("before any detach, the old droplet stops what writes to the volume and unmounts it", () => {
        const release = run.byName("chat-data-release");
        expect(release.type).toBe(COMMAND);
        expect(release.dependsOn).toEqual(["chat-data-attachment"]);
        expect(release.deleteBeforeReplace).toBe(true);
        // It runs only on delete, over the droplet's own address (the old droplet's, from the state).
        expect(release.inputs.create).toBeUndefined();
        expect(release.inputs.update).toBeUndefined();
        expect(release.inputs.delete).toMatch(/^DATA_DIR='\/mnt\/matrix_data' bash -c '/);
        expect(release.inputs.delete).toContain("systemctl stop");
        expect(release.inputs.delete).toContain("umount");
        expect(release.secretInputs.has("connection")).toBe(true);
        if (!preview) {
            expect(release.inputs.connection.host).toBe("203.0.113.99");
            // Replaced whenever the droplet or the attachment is: the engine then deletes it before the old attachment.
            expect(release.inputs.triggers).toEqual(["chat-droplet-id", "chat-data-attachment-id"]);
        }
    });

    test("the firewall opens exactly SSH, HTTP, HTTPS, federation and ping, and allows all outbound", () => {
        const fw = run.byName("chat-firewall").inputs;
        const inbound = fw.inboundRules.map((r: any) => `${r.protocol}/${r.portRange ?? "-"} from ${r.sourceAddresses.join(",")}`);
        expect(inbound).toEqual([
            "tcp/22 from 0.0.0.0/0,::/0",
            "tcp/80 from 0.0.0.0/0,::/0",
            "tcp/443 from 0.0.0.0/0,::/0",
            "tcp/8448 from 0.0.0.0/0,::/0",
            "icmp/- from 0.0.0.0/0,::/0",
        ]);
        const outbound = fw.outboundRules.map((r: any) => `${r.protocol}/${r.portRange ?? "-"} to ${r.destinationAddresses.join(",")}`);
        expect(outbound).toEqual(["tcp/1-65535 to 0.0.0.0/0,::/0", "udp/1-65535 to 0.0.0.0/0,::/0", "icmp/- to 0.0.0.0/0,::/0"]);
    });

    test("DNS: matrix and chat A/AAAA records, DNS-only; both SRV names to matrix:8448; CAA for Let's Encrypt", () => {
        const records = run.ofType(RECORD).map((r) => r.inputs);
        const summary = records.map((r) =>
            r.type === "SRV"
                ? `SRV ${r.name} ${r.data.priority} ${r.data.weight} ${r.data.port} ${r.data.target} top-priority=${r.priority}`
                : r.type === "CAA"
                  ? `CAA ${r.name} ${r.data.flags} ${r.data.tag} ${r.data.value}`
                  : `${r.type} ${r.name} ${preview ? "?" : r.content}`,
        );
        expect(summary.sort()).toEqual(
            [
                `A matrix.phillymesh.net ${preview ? "?" : "203.0.113.10"}`,
                `A chat.phillymesh.net ${preview ? "?" : "203.0.113.10"}`,
                `AAAA matrix.phillymesh.net ${preview ? "?" : "2001:db8::10"}`,
                `AAAA chat.phillymesh.net ${preview ? "?" : "2001:db8::10"}`,
                "SRV _matrix-fed._tcp.phillymesh.net 10 5 8448 matrix.phillymesh.net top-priority=10",
                "SRV _matrix._tcp.phillymesh.net 10 5 8448 matrix.phillymesh.net top-priority=10",
                "CAA phillymesh.net 0 issue letsencrypt.org",
                "CAA phillymesh.net 0 iodef mailto:hello@phillymesh.net",
            ].sort(),
        );
        for (const r of records) {
            expect(r.proxied).toBe(false);
            expect(r.zoneId).toBe(BASE_CONFIG.cloudflareZoneId);
            expect(r.ttl).toBe(1);
            // The mark by which the zone check knows this stack's own records.
            expect(r.comment).toBe("managed by phillymesh-chat (pulumi stack test)");
        }
        // Every name was looked up in the zone before any record was declared.
        const looked = run.calls.filter((c) => c.token === "cloudflare:index/getDnsRecords:getDnsRecords").map((c) => c.inputs.name.exact);
        expect(looked.sort()).toEqual([
            "_matrix-fed._tcp.phillymesh.net",
            "_matrix._tcp.phillymesh.net",
            "chat.phillymesh.net",
            "matrix.phillymesh.net",
            "phillymesh.net",
        ]);
    });

    test("the steps run in order: base, PostgreSQL before Synapse, certificates before the TLS sites", () => {
        expect(step(run, "base").dependsOn.sort()).toEqual(["chat-data-attachment", "chat-data-release", "chat-ip-assignment"]);
        expect(step(run, "postgres").dependsOn).toEqual(["chat-base-run"]);
        expect(step(run, "synapse").dependsOn).toEqual(["chat-postgres-run"]);
        expect(step(run, "synapse-admin").dependsOn).toEqual(["chat-synapse-run"]);
        expect(step(run, "element").dependsOn).toEqual(["chat-base-run"]);
        expect(step(run, "backups").dependsOn).toEqual(["chat-synapse-run"]);
        expect(step(run, "housekeeping").dependsOn).toEqual(["chat-synapse-run"]);
        expect(step(run, "certificates").dependsOn).toContain("chat-base-run");
        expect(step(run, "sites").dependsOn.sort()).toEqual(["chat-certificates-run", "chat-element-run", "chat-synapse-run"]);
        // Certificates wait for the DNS records, which ACME validation reads.
        const certOpts = step(run, "certificates").dependsOn;
        expect(certOpts.some((d) => d === "chat")).toBe(true);
    });

    test("every step connects to the reserved IP as root with the key, and never deletes anything", () => {
        expect(
            steps(run)
                .map((s) => s.name)
                .sort(),
        ).toEqual(
            ["base", "postgres", "synapse", "synapse-admin", "element", "certificates", "sites", "backups", "housekeeping"].map((n) => `chat-${n}-run`).sort(),
        );
        for (const s of steps(run)) {
            expect(s.inputs.connection.user).toBe("root");
            expect(s.inputs.connection.port).toBe(22);
            if (!preview) expect(s.inputs.connection.host).toBe("203.0.113.10");
            expect(s.inputs.delete).toBeUndefined();
            expect(s.inputs.create).toBe(s.inputs.update);
            expect(s.inputs.triggers).toBeUndefined();
            expect(s.secretInputs.has("connection")).toBe(true);
        }
    });

    test("no secret value appears in any input that is not itself secret", () => {
        for (const r of run.resources) {
            for (const [key, value] of Object.entries(r.inputs)) {
                const text = JSON.stringify(value) ?? "";
                for (const [secretName, secret] of Object.entries(SECRETS)) {
                    const needles = [secret, ...secret.split("\n").filter((l) => l.includes("SECRET"))];
                    if (needles.some((n) => text.includes(n))) {
                        expect({ resource: r.name, input: key, secret: secretName, secretInput: r.secretInputs.has(key) }).toEqual({
                            resource: r.name,
                            input: key,
                            secret: secretName,
                            secretInput: true,
                        });
                    }
                }
            }
        }
        // And the steps that carry them really do carry them (the check above is not vacuous).
        expect(step(run, "postgres").inputs.stdin).toContain("export PG_PASSWORD=");
        expect(step(run, "postgres").secretInputs.has("stdin")).toBe(true);
        expect(step(run, "synapse-admin").secretInputs.has("stdin")).toBe(true);
        expect(step(run, "certificates").secretInputs.has("stdin")).toBe(true);
        expect(step(run, "element").secretInputs.has("stdin")).toBe(false);
    });

    test("secrets reach the server single-quoted, so the shell never interprets them", () => {
        const stdin: string = step(run, "postgres").inputs.stdin;
        expect(stdin).toContain(`export PG_PASSWORD='pg-SECRET-pass'\\''with"quotes$(touch /tmp/pwned)'`);
    });

    test("the synapse step's secrets are declared files, synapse's own and 0600, installed only after the new release is built", () => {
        const stdin: string = step(run, "synapse").inputs.stdin;
        const secrets = "/mnt/matrix_data/synapse/secrets";
        // libpq's escaping of ':' and '\' is done before the password is quoted for the shell.
        expect(stdin).toContain(
            `'${secrets}/pgpass' '0600' 'synapse:synapse' '127.0.0.1:5432:synapse:synapse:pg-SECRET-pass'\\''with"quotes$(touch /tmp/pwned)'`,
        );
        expect(stdin).toContain(`'${secrets}/macaroon_secret_key' '0600' 'synapse:synapse' 'macaroon-SECRET-0123456789abcdef0123456789ab'`);
        expect(stdin).toContain("'/etc/matrix-synapse/homeserver.yaml' '0640' 'root:synapse'");
        expect(stdin).not.toContain("export PG_PASSWORD=");
        const script = stdin.slice(stdin.indexOf('# Step "synapse"'));
        // (build_synapse_venv, in venv.sh, marks the new venv complete: files/lib/venv.sh.)
        expect(script.indexOf('build_synapse_venv "$VENV"')).toBeGreaterThan(0);
        expect(script.indexOf("\ninstall_files\n")).toBeGreaterThan(script.indexOf('build_synapse_venv "$VENV"'));
        // The step's scripts no longer write a file of their own from a variable.
        for (const s of steps(run)) expect(s.inputs.stdin.slice(s.inputs.stdin.indexOf("# Step "))).not.toMatch(/put_file \S+ \d+ \S+ "\$[A-Z_]+"$/m);
    });
});

describe("adopting an existing server", () => {
    test("the synapse step carries the old server's paths, the adoption code before its own, and only that step changes", async () => {
        const adopt = {
            adoptSigningKey: "/mnt/matrix_data/adopt/phillymesh.net.signing.key",
            adoptSqliteDatabase: "/mnt/matrix_data/adopt/homeserver.db",
            adoptMediaStore: "/mnt/matrix_data/adopt/media_store",
        };
        const plain = await runProgram();
        const adopting = await runProgram({ ...BASE_CONFIG, ...adopt });
        const stdin: string = step(adopting, "synapse").inputs.stdin;
        expect(stdin).toContain("export ADOPT_SIGNING_KEY='/mnt/matrix_data/adopt/phillymesh.net.signing.key'");
        expect(stdin).toContain("export ADOPT_SQLITE_DATABASE='/mnt/matrix_data/adopt/homeserver.db'");
        expect(stdin).toContain("export ADOPT_POSTGRES_DUMP=''");
        expect(stdin.indexOf("adopt_run() {")).toBeGreaterThan(0);
        expect(stdin.indexOf("adopt_run() {")).toBeLessThan(stdin.indexOf('adopt_run "$VENV"'));
        const changed = adopting.ofType(COMMAND).filter((c) => c.inputs.stdin !== plain.ofType(COMMAND).find((p) => p.name === c.name)?.inputs.stdin);
        expect(changed.map((c) => c.name)).toEqual([step(adopting, "synapse").name]);
    });

    test("a SQLite database and a dump at once are refused, naming both keys", async () => {
        const config = { ...BASE_CONFIG, adoptSigningKey: "/root/k", adoptSqliteDatabase: "/root/homeserver.db", adoptPostgresDump: "/root/synapse.sql" };
        await expect(runProgram(config, SECRETS, { preview: true })).rejects.toThrow(
            /phillymesh-chat:adoptSqliteDatabase and phillymesh-chat:adoptPostgresDump are both set/,
        );
    });
});

describe("a replaced server gets every step again", () => {
    test("every step carries the droplet's id, so a new droplet re-runs them all", async () => {
        const run = await runProgram();
        expect(steps(run)).toHaveLength(9);
        for (const s of steps(run)) expect(s.inputs.stdin).toContain("export SERVER_ID='chat-droplet-id'");
    });

    test("with hosting existing, a new serverId changes every step and nothing else", async () => {
        const config = { ...BASE_CONFIG, hosting: "existing", sshHost: "192.0.2.7", dns: "none", acmeChallenge: "dns-cloudflare", serverId: "machine-a" };
        const inputs = async (c: Record<string, string>) =>
            new Map((await runProgram(c)).resources.filter((r) => r.type === COMMAND).map((r) => [r.name, JSON.stringify(r.inputs)]));
        const before = await inputs(config);
        const after = await inputs({ ...config, serverId: "machine-b" });
        expect([...before.keys()].filter((k) => before.get(k) === after.get(k))).toEqual([]);
        expect(before.size).toBe(9);
    });
});

describe("outputs an operator needs next", () => {
    test("URLs, IP, records, admin id and the well-known JSON", async () => {
        const run = await runProgram();
        const o = run.outputs;
        expect(o.homeserverUrl).toBe("https://matrix.phillymesh.net");
        expect(o.webClientUrl).toBe("https://chat.phillymesh.net");
        expect(o.serverIp).toBe("203.0.113.10");
        expect(o.adminUserId).toBe("@admin:phillymesh.net");
        expect(o.adminLogin).toContain("@admin:phillymesh.net");
        expect(JSON.parse(o.wellKnownMatrixClient)).toEqual({ "m.homeserver": { base_url: "https://matrix.phillymesh.net" } });
        expect(JSON.parse(o.wellKnownMatrixServer)).toEqual({ "m.server": "matrix.phillymesh.net:8448" });
        expect(o.dnsRecords.map((r: any) => `${r.type} ${r.name}`)).toContain("SRV _matrix-fed._tcp.phillymesh.net");
        expect(o.sshCommand).toBe("ssh root@203.0.113.10");
    });
});

describe("hosting existing with dns none (the testbed's and a self-hoster's stack)", () => {
    const config = {
        domain: "phillymesh.test",
        adminEmail: "admin@phillymesh.test",
        hosting: "existing",
        sshHost: "10.250.0.10",
        sshPort: "2222",
        sshUser: "debian",
        dns: "none",
        acmeChallenge: "http",
        apexOnServer: "true",
        synapseVersion: "1.162.0",
        elementVersion: "1.11.999",
    };
    const secrets = { ...SECRETS };
    delete (secrets as Record<string, string>).cloudflareDnsToken;

    test("creates no cloud resource, only the steps, over sudo on the given address", async () => {
        const run = await runProgram(config, secrets);
        expect(run.resources.filter((r) => r.type.startsWith("digitalocean:") || r.type.startsWith("cloudflare:"))).toEqual([]);
        for (const s of run.ofType(COMMAND)) {
            expect(s.inputs.connection.host).toBe("10.250.0.10");
            expect(s.inputs.connection.port).toBe(2222);
            expect(s.inputs.connection.user).toBe("debian");
            expect(s.inputs.create).toMatch(/^sudo -n bash -c /);
        }
        expect(step(run, "base").dependsOn).toEqual([]);
    });

    test("prints the records to create by hand, apex included", async () => {
        const run = await runProgram(config, secrets);
        expect(run.outputs.dnsRecords).toEqual([
            { name: "matrix.phillymesh.test", type: "A", content: "10.250.0.10" },
            { name: "chat.phillymesh.test", type: "A", content: "10.250.0.10" },
            { name: "phillymesh.test", type: "A", content: "10.250.0.10" },
            { name: "_matrix-fed._tcp.phillymesh.test", type: "SRV", priority: 10, weight: 5, port: 8448, target: "matrix.phillymesh.test" },
            { name: "_matrix._tcp.phillymesh.test", type: "SRV", priority: 10, weight: 5, port: 8448, target: "matrix.phillymesh.test" },
            { name: "phillymesh.test", type: "CAA", flags: 0, tag: "issue", value: "letsencrypt.org" },
            { name: "phillymesh.test", type: "CAA", flags: 0, tag: "iodef", value: "mailto:admin@phillymesh.test" },
        ]);
        expect(run.calls).toEqual([]);
    });
});

describe("a version bump is an edit of stack config that touches only its own step", () => {
    async function inputsByName(config: Record<string, string>) {
        const run = await runProgram(config);
        return new Map(
            run.resources.filter((r) => r.type !== "phillymesh-chat:index:RemoteStep").map((r) => [`${r.type}::${r.name}`, JSON.stringify(r.inputs)]),
        );
    }

    test.each([
        ["synapseVersion", "1.163.1", "chat-synapse-run"],
        ["elementVersion", "1.12.4", "chat-element-run"],
    ])("bumping %s to %s changes only %s", async (key, version, expected) => {
        const before = await inputsByName(BASE_CONFIG);
        const after = await inputsByName({ ...BASE_CONFIG, [key]: version });
        const changed = [...before.keys()].filter((k) => before.get(k) !== after.get(k));
        expect(changed).toEqual([`command:remote:Command::${expected}`]);
        const stdinAfter = JSON.parse(after.get(`command:remote:Command::${expected}`)!).stdin as string;
        expect(stdinAfter).toContain(version);
        // No triggers: they are replaceOnChanges in the SDK, so the bump is an in-place update.
        expect(JSON.parse(after.get(`command:remote:Command::${expected}`)!).triggers).toBeUndefined();
    });

    test("a tuning edit (cache factor) re-runs Synapse only; a PostgreSQL edit re-runs PostgreSQL only", async () => {
        const before = await inputsByName(BASE_CONFIG);
        const cache = await inputsByName({ ...BASE_CONFIG, cacheFactor: "0.25" });
        expect([...before.keys()].filter((k) => before.get(k) !== cache.get(k))).toEqual(["command:remote:Command::chat-synapse-run"]);
        const pg = await inputsByName({ ...BASE_CONFIG, postgresSharedBuffersMb: "96" });
        expect([...before.keys()].filter((k) => before.get(k) !== pg.get(k))).toEqual(["command:remote:Command::chat-postgres-run"]);
    });

    test("an advisory feed edit re-runs Synapse's step only; empty turns the daily audit's timer off", async () => {
        const synapseStdin = (m: Map<string, string>) => JSON.parse(m.get("command:remote:Command::chat-synapse-run")!).stdin as string;
        const before = await inputsByName(BASE_CONFIG);
        expect(synapseStdin(before)).toContain("ADVISORY_AUDIT='on'");
        const mirror = await inputsByName({ ...BASE_CONFIG, advisoryFeedUrl: "https://mirror.example/pypi" });
        expect([...before.keys()].filter((k) => before.get(k) !== mirror.get(k))).toEqual(["command:remote:Command::chat-synapse-run"]);
        expect(synapseStdin(mirror)).toContain("https://mirror.example/pypi");
        const off = await inputsByName({ ...BASE_CONFIG, advisoryFeedUrl: "" });
        expect(synapseStdin(off)).toContain("ADVISORY_AUDIT='off'");
    });

    test("the refresh's settings file reads back in bash exactly as configured, whatever the URLs hold", () => {
        const index = "https://mirror.example/simple/$(id)/";
        const feed = "https://mirror.example/pypi/it's";
        const env = refreshFiles(index, feed).find((f) => f.path === "/etc/phillymesh-chat/synapse-refresh.env")!;
        const r = spawnSync("bash", ["-c", `${env.content as string}\nprintf '%s\\n' "$PIP_INDEX_URL" "$ADVISORY_FEED_URL"`], { encoding: "utf8" });
        expect(r.stdout).toBe(`${index}\n${feed}\n`);
    });
});
