// The one place the stack's settings are read, one small reader per concern. Every value is checked
// here, before any resource exists: a bad value fails `pulumi preview` with the key named.
import * as c from "./checks";
import { ConfigSource, PROJECT, Reader } from "./reader";
import { stackConfigSource } from "./source";
import { resolveMemoryPreset } from "./presets";
import { readDatabase } from "./database";
import type {
    AdoptSettings,
    BackupSettings,
    ChatConfig,
    Dns,
    ElementSettings,
    Hosting,
    HousekeepingSettings,
    MediaStorageSettings,
    MonitoringSettings,
    PostgresSettings,
    SynapseSettings,
    TlsSettings,
} from "./types";

export * from "./types";
export * from "./checks";
export { PROJECT, declaredKeys } from "./reader";
export type { ConfigSource } from "./reader";
export { mapSource, stackConfigSource } from "./source";
export { MEMORY_PRESETS, describeMemoryPreset } from "./presets";
export { MANAGED_HEADROOM, managedConnectionLimit, synapseProcesses } from "./database";
export type { MemoryPreset, MemoryPresetName } from "./presets";

/** A Synapse duration in hours, days, weeks or years. */
const checkDuration = (v: string) => (/^[1-9][0-9]{0,4}[hdwy]$/.test(v) ? undefined : "a duration such as 90d, 12w or 1y (h, d, w or y)");

function readHosting(r: Reader, sshAllowedCidrs: readonly string[]): Hosting {
    const kind = r.oneOf("hosting", ["digitalocean", "existing"] as const);
    if (kind === "existing") {
        return {
            kind: "existing",
            host: r.required("sshHost", c.checkHost, "when hosting is existing"),
            port: r.int("sshPort", 1, 65535),
            user: r.required("sshUser", c.checkUnixUser),
            serverId: r.optional("serverId", (v) =>
                /^[A-Za-z0-9._:-]{1,64}$/.test(v) ? undefined : "letters, digits and . _ : - (e.g. the server's /etc/machine-id)",
            ),
        };
    }
    const publicKey = r.optional("sshPublicKey", c.checkSshPublicKey).trim();
    const accountKey = r.optional("doSshKey", c.checkDoSshKey);
    if (publicKey && accountKey) {
        r.fail(
            `${PROJECT}:sshPublicKey and ${PROJECT}:doSshKey are both set: set sshPublicKey for a new key, or doSshKey to use a key already in the DigitalOcean account, not both`,
        );
    } else if (!publicKey && !accountKey) {
        r.fail(
            `${PROJECT}:sshPublicKey or ${PROJECT}:doSshKey is required when hosting is digitalocean: ` +
                '`pulumi config set sshPublicKey "$(cat deploy_key.pub)"` for a new deploy key, or `pulumi config set doSshKey <fingerprint>` for a key already in the account',
        );
    }
    return {
        kind: "digitalocean",
        region: r.required("doRegion", c.checkSlug),
        size: r.required("dropletSize", c.checkSlug),
        image: r.required("dropletImage", c.checkSlug),
        volumeSizeGb: r.int("volumeSizeGb", 1, 16384),
        ipv6: r.bool("ipv6"),
        sshKey: accountKey ? { kind: "account", fingerprintOrId: accountKey } : { kind: "new", publicKey },
        sshAllowedCidrs,
    };
}

function readDns(r: Reader): Dns {
    const kind = r.oneOf("dns", ["cloudflare", "none"] as const);
    if (kind === "none") return { kind: "none" };
    const zoneId = r.required(
        "cloudflareZoneId",
        (v) => (/^[0-9a-f]{32}$/.test(v) ? undefined : "a 32-character hexadecimal Cloudflare zone id"),
        "when dns is cloudflare",
    );
    return { kind: "cloudflare", zoneId };
}

function readTls(r: Reader, domain: string, dns: Dns): TlsSettings {
    const setting = r.oneOf("acmeChallenge", ["auto", "dns-cloudflare", "http"] as const);
    const challenge = setting === "auto" ? (dns.kind === "cloudflare" ? "dns-cloudflare" : "http") : setting;
    const apexOnServer = r.bool("apexOnServer");
    if (challenge === "http" && !apexOnServer) {
        r.fail(
            `${PROJECT}:acmeChallenge is http, so ${PROJECT}:apexOnServer must be true: federation over SRV needs a certificate valid for ${domain || "<domain>"} itself, ` +
                "and HTTP-01 can only prove it when the apex points at this server. Use acmeChallenge dns-cloudflare (with cloudflareDnsToken) otherwise.",
        );
    }
    return {
        acmeServer: r.required("acmeServer", (v) => c.checkUrl(v)),
        challenge,
        cloudflareDnsToken:
            challenge === "dns-cloudflare"
                ? r.secret(
                      "cloudflareDnsToken",
                      (v) => (/^[A-Za-z0-9_-]{20,}$/.test(v) ? undefined : "a Cloudflare API token"),
                      "when acmeChallenge is dns-cloudflare",
                  )
                : undefined,
        apexOnServer,
        caaIssuer: r.optional("caaIssuer", c.checkDomain),
        nginxWorkerProcesses: r.int("nginxWorkerProcesses", 1, 64),
        diskAlertPercent: r.int("diskAlertPercent", 50, 99),
    };
}

function readPostgres(r: Reader, hosting: Hosting): PostgresSettings {
    const diskReserveMb = r.int("postgresDiskReserveMb", 0, 65536);
    // A reserve of half the volume or more would leave Synapse's media almost nothing from the start.
    if (hosting.kind === "digitalocean" && diskReserveMb * 2 > hosting.volumeSizeGb * 1024) {
        r.fail(
            `${PROJECT}:postgresDiskReserveMb is ${diskReserveMb} MB, more than half of the ${hosting.volumeSizeGb} GB volume (volumeSizeGb): ` +
                `at most ${hosting.volumeSizeGb * 512} MB, or 0 to keep the volume's own reserve`,
        );
    }
    return {
        password: r.secret("postgresPassword", strongPassword),
        sharedBuffersMb: r.int("postgresSharedBuffersMb", 8, 8192),
        workMemMb: r.int("postgresWorkMemMb", 1, 1024),
        maxConnections: r.int("postgresMaxConnections", 10, 500),
        lowMemory: r.bool("postgresLowMemory"),
        diskReserveMb,
    };
}

function readAdopt(r: Reader, dataDir: string): AdoptSettings {
    const adopt = {
        signingKey: r.optional("adoptSigningKey", c.checkAbsolutePath),
        sqliteDatabase: r.optional("adoptSqliteDatabase", c.checkAbsolutePath),
        postgresDump: r.optional("adoptPostgresDump", c.checkAbsolutePath),
        mediaStore: r.optional("adoptMediaStore", c.checkAbsolutePath),
    };
    if (adopt.sqliteDatabase && adopt.postgresDump) {
        r.fail(`${PROJECT}:adoptSqliteDatabase and ${PROJECT}:adoptPostgresDump are both set: the old server had one database, set only the one it used`);
    }
    if ((adopt.sqliteDatabase || adopt.postgresDump) && !adopt.signingKey) {
        r.fail(
            `${PROJECT}:${adopt.sqliteDatabase ? "adoptSqliteDatabase" : "adoptPostgresDump"} needs ${PROJECT}:adoptSigningKey too: the old server's signing key is its identity, and other servers reject a new key for its old events`,
        );
    }
    const keys: [string, string][] = [
        ["adoptSigningKey", adopt.signingKey],
        ["adoptSqliteDatabase", adopt.sqliteDatabase],
        ["adoptPostgresDump", adopt.postgresDump],
        ["adoptMediaStore", adopt.mediaStore],
    ];
    for (const [key, value] of keys) {
        if (value && dataDir && (value + "/").startsWith(`${dataDir}/synapse/`)) {
            r.fail(
                `${PROJECT}:${key} (${value}) is inside ${dataDir}/synapse, where the adopted data goes: put the old server's files elsewhere, e.g. ${dataDir}/adopt/`,
            );
        }
    }
    return adopt;
}

/** `localDatabase`: false with database managed, whose pools are checked against the cluster (database.ts), not the local PostgreSQL. */
function readSynapse(r: Reader, postgres: PostgresSettings, dataDir: string, localDatabase: boolean): SynapseSettings {
    const registration = r.oneOf("registration", ["closed", "token", "open"] as const);
    // Synapse refuses open registration without a verification method; we offer reCAPTCHA.
    const recaptcha =
        registration === "open"
            ? {
                  publicKey: r.required("recaptchaPublicKey", recaptchaSiteKey, "when registration is open (Synapse requires a verification method)"),
                  privateKey: r.secret("recaptchaPrivateKey", undefined, "when registration is open"),
              }
            : undefined;
    const databasePoolMax = r.int("databasePoolMax", 1, 100);
    if (localDatabase && databasePoolMax + 3 > postgres.maxConnections) {
        r.fail(
            `${PROJECT}:databasePoolMax (${databasePoolMax}) must leave room under postgresMaxConnections (${postgres.maxConnections}): keep it at most ${postgres.maxConnections - 3}`,
        );
    }
    const cacheMemoryMb = r.int("synapseCacheMemoryMb", 0, 65536);
    if (cacheMemoryMb > 0 && cacheMemoryMb < 32) {
        r.fail(
            `${PROJECT}:synapseCacheMemoryMb (${cacheMemoryMb}) is below what Synapse itself needs, so its caches would be emptied all the time: use 0 (off) or at least 32`,
        );
    }
    const version = r.required("synapseVersion", c.checkVersion);
    const workers = r.int("synapseWorkers", 0, 8);
    if (workers > 0) checkWorkers(r, workers, version, databasePoolMax, localDatabase ? postgres.maxConnections : Infinity);
    return {
        version,
        pipIndexUrl: r.required("pipIndexUrl", c.checkPipIndexUrl),
        advisoryFeedUrl: r.optional("advisoryFeedUrl", c.checkAdvisoryFeedUrl),
        adminUser: r.required("adminUser", c.checkLocalpart),
        adminPassword: r.secret("adminPassword", strongPassword),
        registrationSharedSecret: r.secret("registrationSharedSecret", atLeast32),
        macaroonSecretKey: r.secret("macaroonSecretKey", atLeast32),
        formSecret: r.secret("formSecret", atLeast32),
        registration,
        recaptcha,
        allowGuestAccess: r.bool("allowGuestAccess"),
        sessionLifetime: r.optional("sessionLifetime", checkDuration),
        urlPreviews: r.bool("urlPreviews"),
        maxUploadSizeMb: r.int("maxUploadSizeMb", 1, 2048),
        cacheFactor: r.decimal("cacheFactor", 0.01, 10),
        presence: r.bool("presence"),
        remoteMediaRetention: r.optional("remoteMediaRetention", checkDuration),
        forgottenRoomRetention: r.optional("forgottenRoomRetention", checkDuration),
        remoteRoomComplexityLimit: r.decimal("remoteRoomComplexityLimit", 0, 1000),
        jemalloc: r.bool("synapseJemalloc"),
        cacheMemoryMb,
        databasePoolMax,
        logBackupCount: r.int("logBackupCount", 0, 100),
        workers,
        federationIpAllowlist: r.list("federationIpAllowlist", c.checkCidr),
        trustedKeyServers: r.list("trustedKeyServers", c.checkDomain),
        adopt: readAdopt(r, dataDir),
    };
}

/**
 * Worker mode's own conditions: a Synapse that reads the Redis password and the replication secret
 * from files (1.126.0, worker_replication_secret_path), and a PostgreSQL that admits every process's
 * pool (main, the generic workers, the federation sender and the media worker) plus backups and psql.
 */
function checkWorkers(r: Reader, workers: number, version: string, poolMax: number, maxConnections: number): void {
    const [major, minor] = version.split(".").map(Number);
    if (major === 1 && minor < 126) {
        r.fail(
            `${PROJECT}:synapseWorkers (${workers}) needs Synapse 1.126.0 or newer (synapseVersion is ${version}): raise synapseVersion first, or set synapseWorkers to 0`,
        );
    }
    const processes = workers + 3;
    const needed = processes * poolMax + 3;
    if (needed > maxConnections) {
        r.fail(
            `${PROJECT}:synapseWorkers (${workers}) runs ${processes} Synapse processes with up to databasePoolMax (${poolMax}) connections each: postgresMaxConnections (${maxConnections}) must be at least ${needed}; raise it, or lower databasePoolMax or synapseWorkers`,
        );
    }
}

function readElement(r: Reader, domain: string): ElementSettings {
    const roomDirectory = r.list("roomDirectoryServers", c.checkDomain);
    return {
        version: r.required("elementVersion", c.checkVersion),
        downloadUrl: r.required("elementDownloadUrl", (v) => c.checkUrl(v, true)),
        signingKeyUrl: r.required("elementSigningKeyUrl", (v) => c.checkUrl(v)),
        signingKeyFingerprint: r.required("elementSigningKeyFingerprint", c.checkFingerprint),
        brand: r.required("elementBrand", (v) => (/^[\p{L}\p{N} ._'-]{1,40}$/u.test(v) ? undefined : "a short name (letters, digits, spaces)")),
        // The runbook's room directory: our own server, the neighbouring mesh, and matrix.org.
        roomDirectoryServers: roomDirectory.length > 0 ? roomDirectory : [domain, "nycmesh.net", "matrix.org"].filter((s, i, a) => a.indexOf(s) === i),
    };
}

function readBackups(r: Reader): BackupSettings {
    const rsyncTarget = r.optional("backupRsyncTarget", (v) =>
        /^[a-z_][a-z0-9_-]{0,31}@[A-Za-z0-9.-]{1,200}:\/?[A-Za-z0-9._/-]{1,200}$/.test(v)
            ? undefined
            : "an rsync target such as backup@nas.example.org:/srv/backups/chat",
    );
    const rsyncHostKey = r.optional("backupRsyncHostKey", (v) =>
        /^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa) [A-Za-z0-9+/]{40,2000}={0,2}$/.test(v)
            ? undefined
            : "the target's SSH host key as one line of its ssh_host_*_key.pub, without the comment (ssh-ed25519 AAAA...)",
    );
    if (rsyncTarget && !rsyncHostKey) {
        r.fail(
            `${PROJECT}:backupRsyncHostKey is required with backupRsyncTarget: the target's host key, so the backups go to that host only (on the target: cat /etc/ssh/ssh_host_ed25519_key.pub, without the comment)`,
        );
    }
    if (rsyncHostKey && !rsyncTarget) r.fail(`${PROJECT}:backupRsyncHostKey is set but backupRsyncTarget is empty: set both or neither`);
    const passphrase = r.optionalSecret("backupPassphrase", (v) => (v.length >= 16 ? undefined : "at least 16 characters"));
    return { keep: r.int("backupKeep", 1, 365), rsyncTarget, rsyncHostKey, passphrase };
}

/**
 * mediaStorage (issue 14): `spaces` keeps media in a private DigitalOcean Spaces bucket. Only with
 * hosting digitalocean: the bucket is made with the same DigitalOcean account and token as the
 * droplet, in the droplet's region by default; an existing server has neither. The Spaces keys are
 * secrets, read only when spaces is on.
 */
function readMediaStorage(r: Reader, hosting: Hosting, domain: string): MediaStorageSettings {
    const kind = r.oneOf("mediaStorage", ["local", "spaces"] as const);
    if (kind !== "spaces") return { kind: "local" };
    if (hosting.kind !== "digitalocean") {
        r.fail(
            `${PROJECT}:mediaStorage spaces needs hosting digitalocean (the bucket is made in the DigitalOcean account that holds the droplet): set mediaStorage to local on an existing server`,
        );
    }
    const region = r.optional("spacesRegion", c.checkSlug) || (hosting.kind === "digitalocean" ? hosting.region : "");
    const bucket =
        r.optional("spacesBucket", (v) =>
            /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/.test(v)
                ? undefined
                : "a bucket name of 3-63 lower-case letters, digits and '-' (no dots), starting and ending with a letter or digit",
        ) || `${domain.replace(/\./g, "-").slice(0, 57).replace(/-+$/, "")}-media`;
    const keyId = (v: string) => (/^[A-Za-z0-9]{16,128}$/.test(v) ? undefined : "a Spaces access key id (letters and digits)");
    const secretKey = (v: string) => (/^[A-Za-z0-9/+=]{20,128}$/.test(v) ? undefined : "a Spaces secret key (letters, digits, / + =)");
    return {
        kind,
        region,
        bucket,
        accessKeyId: r.secret("spacesAccessKeyId", keyId, "when mediaStorage is spaces"),
        secretKey: r.secret("spacesSecretKey", secretKey, "when mediaStorage is spaces"),
        cacheDays: r.int("mediaCacheDays", 1, 3650),
        cacheMaxMb: r.int("mediaCacheMaxMb", 64, 16777216),
    };
}

/** Releases of synapse-auto-compressor on PyPI whose wheel does not work: refused at preview. */
const BROKEN_COMPRESSOR_RELEASES: Record<string, string> = {
    "0.1.4": "its wheel on PyPI is an empty stub (the library inside exports no function)",
    "0.1.3": "it was never published on PyPI",
};

function readHousekeeping(r: Reader): HousekeepingSettings {
    return {
        compressor: r.bool("stateCompressor"),
        compressorVersion: r.required("stateCompressorVersion", (v) => {
            const bad = c.checkVersion(v);
            if (bad) return bad;
            return v in BROKEN_COMPRESSOR_RELEASES
                ? `a release with a working wheel such as 0.1.2: ${v} cannot be used, ${BROKEN_COMPRESSOR_RELEASES[v]}`
                : undefined;
        }),
        chunkSize: r.int("stateCompressorChunkSize", 10, 100000),
        chunks: r.int("stateCompressorChunks", 1, 100000),
        memoryMaxMb: r.int("stateCompressorMemoryMb", 64, 65536),
        indexRebuild: r.bool("indexRebuild"),
    };
}

/** DigitalOcean's alert thresholds. The disk one is diskAlertPercent, read with the status check's settings. */
function readMonitoring(r: Reader, diskPercent: number): MonitoringSettings {
    return {
        enabled: r.bool("monitoringAlerts"),
        memoryPercent: r.int("alertMemoryPercent", 50, 99),
        diskPercent,
        load5: r.decimal("alertLoad5", 0.5, 64),
    };
}

function recaptchaSiteKey(v: string): string | undefined {
    return /^[A-Za-z0-9_-]{10,100}$/.test(v) ? undefined : "a reCAPTCHA site key";
}

function atLeast32(v: string): string | undefined {
    return v.length >= 32 ? undefined : "at least 32 characters (`openssl rand -hex 32`)";
}

function strongPassword(v: string): string | undefined {
    return v.length >= 12 ? undefined : "at least 12 characters";
}

/** Reads and checks the whole configuration from `source`; throws one error listing every problem. */
export function readConfig(source: ConfigSource): ChatConfig {
    const r = new Reader(source);
    const domain = r.required("domain", c.checkDomain);
    const dataDir = r.required("dataDir", c.checkAbsolutePath);
    const dns = readDns(r);
    const sshAllowedCidrs = r.list("sshAllowedCidrs", c.checkCidr);
    if (sshAllowedCidrs.length === 0) {
        r.fail(
            `${PROJECT}:sshAllowedCidrs is empty: the firewalls would shut out SSH, and with it every later pulumi up; list where you deploy from (["0.0.0.0/0", "::/0"] for anywhere)`,
        );
    }
    const hosting = readHosting(r, sshAllowedCidrs);
    // The preset decides the tuning keys' defaults, so it is read before any of them.
    const memoryPreset = resolveMemoryPreset(
        r.oneOf("memoryPreset", ["auto", "1gb", "512mb"] as const),
        hosting.kind === "digitalocean" ? hosting.size : undefined,
        (key) => r.isSet(key),
    );
    r.usePresetDefaults(memoryPreset.applied);
    const postgres = readPostgres(r, hosting);
    const tls = readTls(r, domain, dns);
    const databaseKind = r.oneOf("database", ["local", "managed"] as const);
    const synapse = readSynapse(r, postgres, dataDir, databaseKind !== "managed");
    return r.done({
        domain,
        adminEmail: r.required("adminEmail", c.checkEmail),
        hosting,
        memoryPreset,
        sshPrivateKey: r.secret("sshPrivateKey", c.checkSshPrivateKey),
        dataDir,
        swapSizeMb: r.int("swapSizeMb", 0, 65536),
        journalMaxMb: r.int("journalMaxMb", 16, 65536),
        hostFirewall: r.bool("hostFirewall"),
        sshAllowedCidrs,
        dns,
        tls,
        postgres,
        database: readDatabase(r, databaseKind, hosting, synapse),
        synapse,
        backups: readBackups(r),
        housekeeping: readHousekeeping(r),
        element: readElement(r, domain),
        monitoring: readMonitoring(r, tls.diskAlertPercent),
        mediaStorage: readMediaStorage(r, hosting, domain),
    });
}

/** The current stack's configuration, checked. */
export function loadConfig(): ChatConfig {
    return readConfig(stackConfigSource());
}
