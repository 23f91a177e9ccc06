// The one place the stack's settings are read. Every key is declared in Pulumi.yaml (type,
// description, default); this module reads that declaration for the defaults, so the engine and the
// unit tests (which run without the engine) see the same values. Every value is checked here, before
// any resource exists: a bad value fails `pulumi preview` with the key named, and nothing a user typed
// reaches a server without having passed one of these checks.
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import * as yaml from "js-yaml";
import * as pulumi from "@pulumi/pulumi";
// Not in the SDK's typings, but exported by it: whether the stack stores a key encrypted.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { isConfigSecret } = require("@pulumi/pulumi/runtime/config") as { isConfigSecret(key: string): boolean };

export const PROJECT = "phillymesh-chat";

/** How the server comes to exist. */
export type Hosting =
    | {
          readonly kind: "digitalocean";
          readonly region: string;
          readonly size: string;
          readonly image: string;
          readonly volumeSizeGb: number;
          readonly ipv6: boolean;
          readonly sshPublicKey: string;
          readonly sshAllowedCidrs: readonly string[];
      }
    | {
          readonly kind: "existing";
          readonly host: string;
          readonly port: number;
          readonly user: string;
      };

export type Dns = { readonly kind: "cloudflare"; readonly zoneId: string } | { readonly kind: "none" };

export type Registration = "closed" | "token" | "open";
export type AcmeChallenge = "dns-cloudflare" | "http";

export interface ChatConfig {
    readonly domain: string;
    readonly adminEmail: string;
    readonly hosting: Hosting;
    readonly sshPrivateKey: pulumi.Output<string>;
    readonly dataDir: string;
    readonly serverId: string;
    readonly swapSizeMb: number;
    readonly dns: Dns;
    readonly tls: {
        readonly acmeServer: string;
        readonly challenge: AcmeChallenge;
        readonly cloudflareDnsToken?: pulumi.Output<string>;
        readonly apexOnServer: boolean;
        readonly nginxWorkerProcesses: number;
    };
    readonly postgres: {
        readonly password: pulumi.Output<string>;
        readonly sharedBuffersMb: number;
        readonly workMemMb: number;
        readonly maxConnections: number;
        readonly lowMemory: boolean;
    };
    readonly synapse: {
        readonly version: string;
        readonly pipIndexUrl: string;
        readonly adminUser: string;
        readonly adminPassword: pulumi.Output<string>;
        readonly registrationSharedSecret: pulumi.Output<string>;
        readonly macaroonSecretKey: pulumi.Output<string>;
        readonly formSecret: pulumi.Output<string>;
        readonly registration: Registration;
        readonly recaptcha?: { readonly publicKey: string; readonly privateKey: pulumi.Output<string> };
        readonly allowGuestAccess: boolean;
        readonly urlPreviews: boolean;
        readonly maxUploadSizeMb: number;
        readonly cacheFactor: number;
        readonly presence: boolean;
        readonly jemalloc: boolean;
        /** 0: no cache autotuning. */
        readonly cacheMemoryMb: number;
        readonly databasePoolMax: number;
        readonly logBackupCount: number;
        readonly federationIpAllowlist: readonly string[];
        readonly trustedKeyServers: readonly string[];
        /** An old server's data to bring in once (paths on the server; "" when not adopting). */
        readonly adopt: {
            readonly signingKey: string;
            readonly sqliteDatabase: string;
            readonly postgresDump: string;
            readonly mediaStore: string;
        };
    };
    readonly backups: {
        readonly keep: number;
        readonly rsyncTarget: string;
    };
    readonly element: {
        readonly version: string;
        readonly downloadUrl: string;
        readonly signingKeyUrl: string;
        readonly signingKeyFingerprint: string;
        readonly brand: string;
        readonly roomDirectoryServers: readonly string[];
    };
}

// ---------------------------------------------------------------------------------------------
// Checks. Each returns an error text (what was expected) or undefined. They are deliberately strict:
// a value that passes contains no shell or YAML metacharacter unless the check says otherwise.

const DNS_LABEL = "[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?";
const DOMAIN_RE = new RegExp(`^(?:${DNS_LABEL}\\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$`);

export function checkDomain(v: string): string | undefined {
    if (v.length > 200 || !DOMAIN_RE.test(v)) {
        return "a lower-case DNS name such as phillymesh.net (letters, digits, '-' and dots; no scheme, no trailing dot)";
    }
    return undefined;
}

export function checkVersion(v: string): string | undefined {
    return /^\d{1,4}\.\d{1,4}\.\d{1,4}(?:rc\d{1,3})?$/.test(v) ? undefined : "an exact release such as 1.163.2 (digits and dots only)";
}

export function checkEmail(v: string): string | undefined {
    return /^[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,63}$/.test(v) ? undefined : "an e-mail address such as admin@example.org";
}

export function checkCidr(v: string): string | undefined {
    const m = /^([0-9a-fA-F.:]+)\/(\d{1,3})$/.exec(v);
    const family = m ? net.isIP(m[1]) : 0;
    if (!m || family === 0 || Number(m[2]) > (family === 4 ? 32 : 128)) {
        return "CIDRs such as 203.0.113.0/24 or 2001:db8::/32";
    }
    return undefined;
}

export function checkHost(v: string): string | undefined {
    if (net.isIP(v) !== 0) return undefined;
    return checkDomain(v) === undefined || /^[a-z0-9-]{1,63}$/.test(v) ? undefined : "an IP address or host name";
}

export function checkUrl(v: string, allowPlaceholder = false): string | undefined {
    const expected = "an http(s) URL without spaces, quotes or shell characters";
    if (!/^https?:\/\/[A-Za-z0-9._~:/?#\[\]@!&'()*+,;=%{}-]+$/.test(v) || /['`$\\]/.test(v)) return expected;
    try {
        new URL(allowPlaceholder ? v.split("{version}").join("0") : v);
    } catch {
        return expected;
    }
    if (!allowPlaceholder && v.includes("{")) return expected;
    return undefined;
}

export function checkLocalpart(v: string): string | undefined {
    return /^[a-z0-9._=-]{1,64}$/.test(v) ? undefined : "a Matrix user name: lower-case letters, digits and . _ = - only";
}

export function checkSlug(v: string): string | undefined {
    return /^[a-z0-9][a-z0-9-]{0,62}$/.test(v) ? undefined : "a slug of lower-case letters, digits and '-'";
}

export function checkFingerprint(v: string): string | undefined {
    return /^[0-9A-F]{40}$/.test(v) ? undefined : "a 40-digit upper-case hexadecimal OpenPGP fingerprint without spaces";
}

export function checkAbsolutePath(v: string): string | undefined {
    return /^\/[A-Za-z0-9._/-]{1,200}$/.test(v) && !v.includes("..") && v !== "/" ? undefined : "an absolute path of letters, digits, '.', '_', '-' and '/'";
}

export function checkSshPublicKey(v: string): string | undefined {
    return /^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/=]{40,}( [^\n]*)?$/.test(v.trim())
        ? undefined
        : "one OpenSSH public key line, e.g. 'ssh-ed25519 AAAA... you@laptop'";
}

export function checkSshPrivateKey(v: string): string | undefined {
    return /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]+-----END [A-Z ]*PRIVATE KEY-----/.test(v)
        ? undefined
        : "a PEM private key (-----BEGIN OPENSSH PRIVATE KEY----- ...); set it with `pulumi config set --secret sshPrivateKey < ~/.ssh/id_ed25519`";
}

// ---------------------------------------------------------------------------------------------

interface Declared {
    readonly type: "string" | "integer" | "boolean" | "array";
    readonly default?: unknown;
    readonly secret?: boolean;
}

let declaredCache: Record<string, Declared> | undefined;

/** The `config:` block of Pulumi.yaml: the declared keys with their types and defaults. */
export function declaredKeys(): Record<string, Declared> {
    if (!declaredCache) {
        const project = yaml.load(fs.readFileSync(path.join(__dirname, "..", "Pulumi.yaml"), "utf8")) as {
            config: Record<string, Declared>;
        };
        declaredCache = project.config;
    }
    return declaredCache;
}

/** Collects every problem before failing, so one preview names all the keys that need fixing. */
class Reader {
    readonly problems: string[] = [];
    private readonly cfg = new pulumi.Config(PROJECT);

    private decl(key: string): Declared {
        const d = declaredKeys()[key];
        if (!d) throw new Error(`internal: config key '${key}' is read but not declared in Pulumi.yaml`);
        return d;
    }

    problem(key: string, expected: string, shown?: string): void {
        const got = shown === undefined ? "" : ` (got ${JSON.stringify(shown.length > 80 ? shown.slice(0, 77) + "..." : shown)})`;
        this.problems.push(`${PROJECT}:${key} must be ${expected}${got}`);
    }

    /** Raw text of a key, or its declared default; undefined when neither exists. */
    private raw(key: string): string | undefined {
        const v = this.cfg.get(key);
        if (v !== undefined) return v;
        const d = this.decl(key).default;
        if (d === undefined) return undefined;
        return typeof d === "string" ? d : JSON.stringify(d);
    }

    /** A key that must have a non-empty value (set, or defaulted in Pulumi.yaml) passing `check`. */
    required(key: string, check: (v: string) => string | undefined, when?: string): string {
        const v = this.raw(key);
        if (v === undefined || v === "") {
            this.problems.push(`${PROJECT}:${key} is required${when ? ` ${when}` : ""}: \`pulumi config set ${key} <value>\``);
            return "";
        }
        const err = check(v);
        if (err) this.problem(key, err, v);
        return v;
    }

    /** A key that may be empty; when set it must pass `check`. */
    optional(key: string, check: (v: string) => string | undefined): string {
        const v = this.raw(key) ?? "";
        const err = v === "" ? undefined : check(v);
        if (err) this.problem(key, err, v);
        return v;
    }

    oneOf<T extends string>(key: string, allowed: readonly T[]): T {
        const v = this.raw(key) ?? "";
        if (!allowed.includes(v as T)) this.problem(key, `one of ${allowed.join(", ")}`, v);
        return v as T;
    }

    int(key: string, min: number, max: number): number {
        const v = this.raw(key);
        const n = Number(v);
        if (v === undefined || !/^-?\d+$/.test(v.trim()) || n < min || n > max) {
            this.problem(key, `a whole number from ${min} to ${max}`, v);
            return min;
        }
        return n;
    }

    decimal(key: string, min: number, max: number): number {
        const v = this.raw(key);
        const n = Number(v);
        if (v === undefined || !/^\d+(\.\d+)?$/.test(v.trim()) || n < min || n > max) {
            this.problem(key, `a decimal number from ${min} to ${max}`, v);
            return min;
        }
        return n;
    }

    bool(key: string): boolean {
        const v = this.raw(key);
        if (v !== "true" && v !== "false") this.problem(key, "true or false", v);
        return v === "true";
    }

    list(key: string, check: (v: string) => string | undefined): string[] {
        const v = this.raw(key) ?? "[]";
        let parsed: unknown;
        try {
            parsed = JSON.parse(v);
        } catch {
            parsed = undefined;
        }
        if (!Array.isArray(parsed) || parsed.some((x) => typeof x !== "string")) {
            this.problem(key, "a list of strings (set with `pulumi config set --path '" + key + "[0]' value`)", v);
            return [];
        }
        for (const item of parsed as string[]) {
            const err = check(item);
            if (err) this.problem(key, `a list of ${err}`, item);
        }
        return parsed as string[];
    }

    /** A secret: must be set, must be stored encrypted, and comes back as a secret Output. */
    secret(key: string, check?: (v: string) => string | undefined, when?: string): pulumi.Output<string> {
        const v = this.cfg.get(key);
        if (v === undefined || v === "") {
            this.problems.push(`${PROJECT}:${key} is required${when ? ` ${when}` : ""}: \`pulumi config set --secret ${key} <value>\``);
            return pulumi.secret("");
        }
        // Optional secrets cannot be declared `secret: true` in Pulumi.yaml (the engine would reject
        // their empty default as unencrypted), so this is where a plain-text value is refused.
        if (!isConfigSecret(`${PROJECT}:${key}`)) {
            this.problems.push(`${PROJECT}:${key} must be stored encrypted: \`pulumi config set --secret ${key} <value>\``);
        }
        const err = check ? check(v) : undefined;
        // Never echo a secret back, not even in an error.
        if (err) this.problem(key, err);
        return pulumi.secret(v);
    }
}

function atLeast32(v: string): string | undefined {
    return v.length >= 32 ? undefined : "at least 32 characters (`openssl rand -hex 32`)";
}

function strongPassword(v: string): string | undefined {
    return v.length >= 12 ? undefined : "at least 12 characters";
}

/** Reads and checks the whole stack configuration; throws one error listing every problem. */
export function loadConfig(): ChatConfig {
    const r = new Reader();

    const domain = r.required("domain", checkDomain);
    const adminEmail = r.required("adminEmail", checkEmail);

    const hostingKind = r.oneOf("hosting", ["digitalocean", "existing"] as const);
    let hosting: Hosting;
    if (hostingKind === "existing") {
        hosting = {
            kind: "existing",
            host: r.required("sshHost", checkHost, "when hosting is existing"),
            port: r.int("sshPort", 1, 65535),
            user: r.required("sshUser", (v) => (/^[a-z_][a-z0-9_-]{0,31}$/.test(v) ? undefined : "a Unix user name")),
        };
    } else {
        hosting = {
            kind: "digitalocean",
            region: r.required("doRegion", checkSlug),
            size: r.required("dropletSize", checkSlug),
            image: r.required("dropletImage", checkSlug),
            volumeSizeGb: r.int("volumeSizeGb", 1, 16384),
            ipv6: r.bool("ipv6"),
            sshPublicKey: r.required("sshPublicKey", checkSshPublicKey, "when hosting is digitalocean").trim(),
            sshAllowedCidrs: r.list("sshAllowedCidrs", checkCidr),
        };
    }
    const sshPrivateKey = r.secret("sshPrivateKey", checkSshPrivateKey);

    const dnsKind = r.oneOf("dns", ["cloudflare", "none"] as const);
    const dns: Dns =
        dnsKind === "cloudflare"
            ? {
                  kind: "cloudflare",
                  zoneId: r.required("cloudflareZoneId", (v) => (/^[0-9a-f]{32}$/.test(v) ? undefined : "a 32-character hexadecimal Cloudflare zone id"), "when dns is cloudflare"),
              }
            : { kind: "none" };

    const challengeSetting = r.oneOf("acmeChallenge", ["auto", "dns-cloudflare", "http"] as const);
    const challenge: AcmeChallenge = challengeSetting === "auto" ? (dnsKind === "cloudflare" ? "dns-cloudflare" : "http") : challengeSetting;
    const apexOnServer = r.bool("apexOnServer");
    if (challenge === "http" && !apexOnServer) {
        r.problems.push(
            `${PROJECT}:acmeChallenge is http, so ${PROJECT}:apexOnServer must be true: federation over SRV needs a certificate valid for ${domain || "<domain>"} itself, ` +
                "and HTTP-01 can only prove it when the apex points at this server. Use acmeChallenge dns-cloudflare (with cloudflareDnsToken) otherwise.",
        );
    }
    const tls = {
        acmeServer: r.required("acmeServer", (v) => checkUrl(v)),
        challenge,
        cloudflareDnsToken:
            challenge === "dns-cloudflare"
                ? r.secret("cloudflareDnsToken", (v) => (/^[A-Za-z0-9_-]{20,}$/.test(v) ? undefined : "a Cloudflare API token"), "when acmeChallenge is dns-cloudflare")
                : undefined,
        apexOnServer,
        nginxWorkerProcesses: r.int("nginxWorkerProcesses", 1, 64),
    };

    const postgres = {
        password: r.secret("postgresPassword", strongPassword),
        sharedBuffersMb: r.int("postgresSharedBuffersMb", 8, 8192),
        workMemMb: r.int("postgresWorkMemMb", 1, 1024),
        maxConnections: r.int("postgresMaxConnections", 10, 500),
        lowMemory: r.bool("postgresLowMemory"),
    };

    const registration = r.oneOf("registration", ["closed", "token", "open"] as const);
    let recaptcha: ChatConfig["synapse"]["recaptcha"];
    if (registration === "open") {
        // Synapse refuses open registration without a verification method; we offer reCAPTCHA.
        recaptcha = {
            publicKey: r.required("recaptchaPublicKey", (v) => (/^[A-Za-z0-9_-]{10,100}$/.test(v) ? undefined : "a reCAPTCHA site key"), "when registration is open (Synapse requires a verification method)"),
            privateKey: r.secret("recaptchaPrivateKey", undefined, "when registration is open"),
        };
    }
    const databasePoolMax = r.int("databasePoolMax", 1, 100);
    const maxConnections = postgres.maxConnections;
    if (databasePoolMax + 3 > maxConnections) {
        r.problems.push(`${PROJECT}:databasePoolMax (${databasePoolMax}) must leave room under postgresMaxConnections (${maxConnections}): keep it at most ${maxConnections - 3}`);
    }

    const cacheMemoryMb = r.int("synapseCacheMemoryMb", 0, 65536);
    if (cacheMemoryMb > 0 && cacheMemoryMb < 32) {
        r.problems.push(`${PROJECT}:synapseCacheMemoryMb (${cacheMemoryMb}) is below what Synapse itself needs, so its caches would be emptied all the time: use 0 (off) or at least 32`);
    }

    const adopt = {
        signingKey: r.optional("adoptSigningKey", checkAbsolutePath),
        sqliteDatabase: r.optional("adoptSqliteDatabase", checkAbsolutePath),
        postgresDump: r.optional("adoptPostgresDump", checkAbsolutePath),
        mediaStore: r.optional("adoptMediaStore", checkAbsolutePath),
    };
    if (adopt.sqliteDatabase && adopt.postgresDump) {
        r.problems.push(`${PROJECT}:adoptSqliteDatabase and ${PROJECT}:adoptPostgresDump are both set: the old server had one database, set only the one it used`);
    }
    if ((adopt.sqliteDatabase || adopt.postgresDump) && !adopt.signingKey) {
        r.problems.push(
            `${PROJECT}:${adopt.sqliteDatabase ? "adoptSqliteDatabase" : "adoptPostgresDump"} needs ${PROJECT}:adoptSigningKey too: the old server's signing key is its identity, and other servers reject a new key for its old events`,
        );
    }

    const synapse = {
        version: r.required("synapseVersion", checkVersion),
        pipIndexUrl: r.required("pipIndexUrl", (v) => checkUrl(v)),
        adminUser: r.required("adminUser", checkLocalpart),
        adminPassword: r.secret("adminPassword", strongPassword),
        registrationSharedSecret: r.secret("registrationSharedSecret", atLeast32),
        macaroonSecretKey: r.secret("macaroonSecretKey", atLeast32),
        formSecret: r.secret("formSecret", atLeast32),
        registration,
        recaptcha,
        allowGuestAccess: r.bool("allowGuestAccess"),
        urlPreviews: r.bool("urlPreviews"),
        maxUploadSizeMb: r.int("maxUploadSizeMb", 1, 2048),
        cacheFactor: r.decimal("cacheFactor", 0.01, 10),
        presence: r.bool("presence"),
        jemalloc: r.bool("synapseJemalloc"),
        cacheMemoryMb,
        databasePoolMax,
        logBackupCount: r.int("logBackupCount", 0, 100),
        federationIpAllowlist: r.list("federationIpAllowlist", checkCidr),
        trustedKeyServers: r.list("trustedKeyServers", checkDomain),
        adopt,
    };

    const roomDirectory = r.list("roomDirectoryServers", checkDomain);
    const element = {
        version: r.required("elementVersion", checkVersion),
        downloadUrl: r.required("elementDownloadUrl", (v) => checkUrl(v, true)),
        signingKeyUrl: r.required("elementSigningKeyUrl", (v) => checkUrl(v)),
        signingKeyFingerprint: r.required("elementSigningKeyFingerprint", checkFingerprint),
        brand: r.required("elementBrand", (v) => (/^[\p{L}\p{N} ._'-]{1,40}$/u.test(v) ? undefined : "a short name (letters, digits, spaces)")),
        // The runbook's room directory: our own server, the neighbouring mesh, and matrix.org.
        roomDirectoryServers: roomDirectory.length > 0 ? roomDirectory : [domain, "nycmesh.net", "matrix.org"].filter((s, i, a) => a.indexOf(s) === i),
    };

    const backups = {
        keep: r.int("backupKeep", 1, 365),
        rsyncTarget: r.optional("backupRsyncTarget", (v) =>
            /^[a-z_][a-z0-9_-]{0,31}@[A-Za-z0-9.-]{1,200}:\/?[A-Za-z0-9._/-]{1,200}$/.test(v) ? undefined : "an rsync target such as backup@nas.example.org:/srv/backups/chat",
        ),
    };

    const dataDir = r.required("dataDir", checkAbsolutePath);
    for (const [key, value] of [["adoptSigningKey", adopt.signingKey], ["adoptSqliteDatabase", adopt.sqliteDatabase], ["adoptPostgresDump", adopt.postgresDump], ["adoptMediaStore", adopt.mediaStore]]) {
        if (value && dataDir && (value + "/").startsWith(`${dataDir}/synapse/`)) {
            r.problems.push(`${PROJECT}:${key} (${value}) is inside ${dataDir}/synapse, where the adopted data goes: put the old server's files elsewhere, e.g. ${dataDir}/adopt/`);
        }
    }

    const config: ChatConfig = {
        domain,
        adminEmail,
        hosting,
        sshPrivateKey,
        dataDir,
        serverId: r.optional("serverId", (v) => (/^[A-Za-z0-9._:-]{1,64}$/.test(v) ? undefined : "letters, digits and . _ : - (e.g. the server's /etc/machine-id)")),
        swapSizeMb: r.int("swapSizeMb", 0, 65536),
        dns,
        tls,
        postgres,
        synapse,
        backups,
        element,
    };

    if (r.problems.length > 0) {
        throw new pulumi.RunError(
            `The stack configuration has ${r.problems.length} problem${r.problems.length === 1 ? "" : "s"}; nothing was changed:\n  - ${r.problems.join("\n  - ")}`,
        );
    }
    return config;
}
