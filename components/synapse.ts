// The Synapse homeserver at the exact version in stack config, its configuration rendered from a
// typed object, and the admin account.
import * as yaml from "js-yaml";
import * as pulumi from "@pulumi/pulumi";
import type { SynapseSettings } from "./config";
import { Target } from "./host";
import { dataPaths, Hostnames, PORTS, SERVER_PATHS, urls } from "./layout";
import { RemoteStep, ServerFile } from "./remoteStep";
import { readFile, renderTemplate, shellQuote } from "./templates";
import { mainWorkerSettings, replicationListener, workerLayout } from "./workerLayout";
import { mediaStorageProviders, S3_PROVIDER_REQUIREMENT, SpacesMedia, synapseMediaFiles } from "./mediaStorage";
import { MANAGED_DB_CA_PATH, MANAGED_DB_NAME, MANAGED_DB_USER, ManagedDatabaseConnection, passfileLine } from "./managedDatabase";

/** What Synapse is built from. */
export interface SynapseBuild {
    readonly names: Hostnames;
    readonly adminEmail: string;
    readonly dataDir: string;
    readonly synapse: SynapseSettings;
    /** mediaStorage spaces (mediaStorage.ts); absent with local media, which changes nothing here. */
    readonly media?: SpacesMedia;
}

/**
 * Addresses link previews may never fetch: Synapse's documented list (the runbook's four ranges are
 * not enough — loopback, link-local, CGNAT, multicast, documentation and IPv6 private ranges too).
 */
export const URL_PREVIEW_IP_RANGE_BLOCKLIST: readonly string[] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "::1/128",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
];

/** With database managed: the cluster's address (known once it exists) and each process's pool. */
export interface ManagedDatabaseTarget {
    readonly host: string;
    readonly port: number;
    readonly poolMax: number;
}

/**
 * Synapse's database section with database managed: the cluster over TLS, its certificate verified
 * against the cluster's CA and its host name (libpq's verify-full), the password in the passfile.
 */
export function managedDatabaseConfig(dataDir: string, m: ManagedDatabaseTarget): Record<string, unknown> {
    return {
        name: "psycopg2",
        args: {
            user: MANAGED_DB_USER,
            dbname: MANAGED_DB_NAME,
            host: m.host,
            port: m.port,
            sslmode: "verify-full",
            sslrootcert: MANAGED_DB_CA_PATH,
            passfile: `${dataPaths(dataDir).secrets}/pgpass`,
            cp_min: 1,
            cp_max: m.poolMax,
        },
    };
}

/**
 * homeserver.yaml as an object. It holds no secret: those are files referenced by *_path options.
 * `managed`: the cluster with database managed; without it, the local PostgreSQL (unchanged).
 */
export function homeserverConfig(b: SynapseBuild, managed?: ManagedDatabaseTarget): Record<string, unknown> {
    const s = b.synapse;
    const p = dataPaths(b.dataDir);
    const u = urls(b.names);
    // Worker mode only (synapseWorkers > 0); with 0 workers, nothing below changes.
    const workers = workerLayout(s.workers);
    return {
        server_name: b.names.server,
        public_baseurl: `${u.homeserver}/`,
        web_client_location: `${u.webClient}/`,
        admin_contact: `mailto:${b.adminEmail}`,
        report_stats: false,
        listeners: [
            {
                port: PORTS.synapse,
                tls: false,
                type: "http",
                x_forwarded: true,
                bind_addresses: ["127.0.0.1"],
                resources: [{ names: ["client", "federation"], compress: false }],
            },
            ...(workers.length > 0 ? [replicationListener] : []),
        ],
        database: managed
            ? managedDatabaseConfig(b.dataDir, managed)
            : {
                  name: "psycopg2",
                  args: {
                      user: "synapse",
                      dbname: "synapse",
                      host: "127.0.0.1",
                      port: PORTS.postgres,
                      // libpq reads the password from this 0600 file, so this file holds none.
                      passfile: `${p.secrets}/pgpass`,
                      cp_min: 1,
                      cp_max: s.databasePoolMax,
                  },
              },
        log_config: `${SERVER_PATHS.synapseConfigDir}/log.yaml`,
        media_store_path: p.media,
        signing_key_path: p.signingKey,
        registration_shared_secret_path: `${p.secrets}/registration_shared_secret`,
        macaroon_secret_key_path: `${p.secrets}/macaroon_secret_key`,
        form_secret_path: `${p.secrets}/form_secret`,
        enable_registration: s.registration !== "closed",
        registration_requires_token: s.registration === "token",
        enable_registration_captcha: s.registration === "open",
        ...(s.recaptcha ? { recaptcha_public_key: s.recaptcha.publicKey } : {}),
        allow_guest_access: s.allowGuestAccess,
        // Profiles (display name, avatar) are not a public directory: only a logged-in user who shares
        // a room with someone sees theirs, so a stranger cannot list who is on the server.
        require_auth_for_profile_requests: true,
        limit_profile_requests_to_users_who_share_rooms: true,
        ...(s.sessionLifetime ? { session_lifetime: s.sessionLifetime } : {}),
        url_preview_enabled: s.urlPreviews,
        url_preview_ip_range_blacklist: [...URL_PREVIEW_IP_RANGE_BLOCKLIST],
        // Private ranges are refused for outbound requests by default; a mesh network's own
        // addresses (or a local testbed) must be allowed explicitly to federate over them.
        ...(s.federationIpAllowlist.length > 0 ? { ip_range_whitelist: [...s.federationIpAllowlist] } : {}),
        max_upload_size: `${s.maxUploadSizeMb}M`,
        caches: {
            global_factor: s.cacheFactor,
            // Autotuning reads jemalloc's statistics; without jemalloc Synapse ignores it.
            ...(s.jemalloc && s.cacheMemoryMb > 0
                ? {
                      cache_autotuning: {
                          max_cache_memory_usage: `${s.cacheMemoryMb}M`,
                          target_cache_memory_usage: `${Math.floor((s.cacheMemoryMb * 3) / 4)}M`,
                          min_cache_ttl: "30s",
                      },
                  }
                : {}),
        },
        presence: { enabled: s.presence },
        // Years on a small disk (issue 12): other servers' media is a cache, fetched again when
        // needed; our own uploads are kept. Rooms everyone here has forgotten are purged.
        ...(s.remoteMediaRetention ? { media_retention: { remote_media_lifetime: s.remoteMediaRetention } } : {}),
        ...(s.forgottenRoomRetention ? { forgotten_room_retention_period: s.forgottenRoomRetention } : {}),
        // A room with a huge state (thousands of members, years of history) can take a 1 GB server
        // down on join; users are told so, the admin can still join.
        ...(s.remoteRoomComplexityLimit > 0
            ? {
                  limit_remote_rooms: {
                      enabled: true,
                      complexity: s.remoteRoomComplexityLimit,
                      complexity_error: "This room is too large for this small server to join. Ask the server's admin if you need it.",
                      admins_can_join: true,
                  },
              }
            : {}),
        trusted_key_servers: s.trustedKeyServers.map((server_name) => ({ server_name })),
        suppress_key_server_warning: true,
        ...mainWorkerSettings(workers),
        ...(b.media ? { media_storage_providers: mediaStorageProviders(b.media) } : {}),
    };
}

/**
 * Synapse's logging: one file, rotated nightly, logBackupCount old files kept (the runbook: 1). Each
 * worker logs to a file of its own (`<worker name>.log`).
 */
export function logConfig(s: Pick<SynapseSettings, "logBackupCount">, file = "homeserver.log"): Record<string, unknown> {
    return {
        version: 1,
        formatters: { precise: { format: "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s" } },
        handlers: {
            file: {
                class: "logging.handlers.TimedRotatingFileHandler",
                formatter: "precise",
                filename: `/var/log/matrix-synapse/${file}`,
                when: "midnight",
                backupCount: s.logBackupCount,
                encoding: "utf8",
            },
            console: { class: "logging.StreamHandler", formatter: "precise", level: "WARNING" },
        },
        loggers: { "synapse.storage.SQL": { level: "INFO" } },
        root: { level: "INFO", handlers: ["file", "console"] },
        disable_existing_loggers: false,
    };
}

/** The unit's allocator lines (the main process's and the workers'). */
export function allocatorLines(s: Pick<SynapseSettings, "jemalloc">): string {
    return s.jemalloc
        ? [
              "# jemalloc returns freed memory to the system; CPython's allocator on glibc keeps it (Synapse docs).",
              "Environment=LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
              // A background thread purges freed pages within a second even while Synapse is idle
              // (otherwise only allocations trigger it), and two arenas instead of 4 per CPU keep
              // the few threads Synapse has from spreading their memory thin.
              "Environment=MALLOC_CONF=background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,narenas:2",
          ].join("\n")
        : "# synapseJemalloc is false: the system allocator.";
}

/** The systemd unit, with or without jemalloc. */
export function synapseUnit(dataDir: string, s: Pick<SynapseSettings, "jemalloc">): string {
    return renderTemplate("server/systemd/matrix-synapse.service", {
        data_dir: dataDir,
        allocator: allocatorLines(s),
        venv: SERVER_PATHS.synapseCurrent,
        config_dir: SERVER_PATHS.synapseConfigDir,
    });
}

export function toYaml(obj: unknown): string {
    return yaml.dump(obj, { lineWidth: -1, noRefs: true, sortKeys: false });
}

/** libpq's password file line: ':' and '\\' in the password escaped as its format requires. */
export function pgpassLine(password: string): string {
    return `127.0.0.1:${PORTS.postgres}:synapse:synapse:${password.replace(/\\/g, "\\\\").replace(/:/g, "\\:")}`;
}

/**
 * What the synapse step installs: the configuration (homeserver.yaml holds no secret), the unit, and
 * each secret in its own file readable by synapse alone (in root:synapse 0750 directories). The
 * reCAPTCHA key, when set, goes to conf.d/secrets.yaml.
 */
export function synapseFiles(
    b: SynapseBuild,
    secrets: {
        readonly postgresPassword: pulumi.Input<string>;
        readonly registrationSharedSecret: pulumi.Input<string>;
        readonly macaroonSecretKey: pulumi.Input<string>;
        readonly formSecret: pulumi.Input<string>;
        readonly recaptchaPrivateKey?: pulumi.Input<string>;
    },
    managed?: ManagedDatabaseConnection,
): ServerFile[] {
    const p = dataPaths(b.dataDir);
    const etc = SERVER_PATHS.synapseConfigDir;
    const secret = (path: string, content: pulumi.Input<string>): ServerFile => ({ path, content, mode: "0600", owner: "synapse:synapse" });
    return [
        secret(`${p.secrets}/registration_shared_secret`, secrets.registrationSharedSecret),
        secret(`${p.secrets}/macaroon_secret_key`, secrets.macaroonSecretKey),
        secret(`${p.secrets}/form_secret`, secrets.formSecret),
        // libpq refuses a password file others may read: synapse's own, 0600. With database managed,
        // the cluster's user, address and password (DigitalOcean's) instead of the local role's.
        secret(
            `${p.secrets}/pgpass`,
            managed
                ? pulumi.secret(pulumi.all([managed.host, managed.port, managed.password]).apply(([h, port, pw]) => passfileLine(h, port, pw)))
                : pulumi.output(secrets.postgresPassword).apply(pgpassLine),
        ),
        {
            path: `${etc}/homeserver.yaml`,
            content: managed
                ? pulumi.all([managed.host, managed.port]).apply(([host, port]) => toYaml(homeserverConfig(b, { host, port, poolMax: managed.poolMax })))
                : toYaml(homeserverConfig(b)),
            mode: "0640",
            owner: "root:synapse",
        },
        { path: `${etc}/log.yaml`, content: toYaml(logConfig(b.synapse)), mode: "0644", owner: "root:root" },
        ...(secrets.recaptchaPrivateKey !== undefined
            ? [
                  {
                      path: `${etc}/conf.d/secrets.yaml`,
                      content: pulumi.output(secrets.recaptchaPrivateKey).apply((k) => toYaml({ recaptcha_private_key: k })),
                      mode: "0640",
                      owner: "root:synapse",
                  } as const,
              ]
            : []),
        { path: "/etc/systemd/system/matrix-synapse.service", content: synapseUnit(b.dataDir, b.synapse), mode: "0644", owner: "root:root" },
        ...refreshFiles(b.synapse.pipIndexUrl, b.synapse.advisoryFeedUrl, synapseRequirements(b)),
        ...(b.media ? synapseMediaFiles(b.dataDir, b.media) : []),
    ];
}

/** Pinned packages installed into Synapse's virtualenv with it: the S3 storage provider with spaces. */
export function synapseRequirements(b: Pick<SynapseBuild, "media">): string[] {
    return b.media ? [S3_PROVIDER_REQUIREMENT] : [];
}

/** The units of phillymesh-chat-synapse-refresh: one template, run weekly in full and daily if advised. */
const REFRESH_UNITS = {
    refresh: "phillymesh-chat-synapse-refresh",
    audit: "phillymesh-chat-advisory-audit",
} as const;

/**
 * Synapse's Python dependencies kept up to date within its release (phillymesh-chat-synapse-refresh):
 * the program, the step's own lib.sh and venv.sh that it sources, the advisory check, the index it
 * builds from and the advisory feed, and two units from one template with their timers: the weekly
 * refresh, and the daily audit that refreshes only when an advisory is in force.
 */
export function refreshFiles(pipIndexUrl: string, advisoryFeedUrl: string, requirements: readonly string[] = []): ServerFile[] {
    const root = (path: string, content: string, mode: "0644" | "0755"): ServerFile => ({ path, content, mode, owner: "root:root" });
    const unit = (description: string, args: string) => renderTemplate("server/systemd/synapse-refresh.service", { description, arguments: args });
    const env = {
        PIP_INDEX_URL: pipIndexUrl,
        ADVISORY_FEED_URL: advisoryFeedUrl,
        ...(requirements.length > 0 ? { SYNAPSE_REQUIREMENTS: requirements.join(" ") } : {}),
    };
    return [
        root("/usr/local/lib/phillymesh-chat/lib.sh", readFile("lib/lib.sh"), "0644"),
        root("/usr/local/lib/phillymesh-chat/venv.sh", readFile("lib/venv.sh"), "0644"),
        root("/usr/local/lib/phillymesh-chat/advisories.py", readFile("lib/advisories.py"), "0644"),
        root(
            "/etc/phillymesh-chat/synapse-refresh.env",
            Object.entries(env)
                .map(([k, v]) => `${k}=${shellQuote(v)}`)
                .join("\n"),
            "0644",
        ),
        root("/usr/local/sbin/phillymesh-chat-synapse-refresh", readFile("server/sbin/phillymesh-chat-synapse-refresh.sh"), "0755"),
        root(
            `/etc/systemd/system/${REFRESH_UNITS.refresh}.service`,
            unit("Rebuild Synapse's virtualenv with the newest dependencies its release allows", ""),
            "0644",
        ),
        root(`/etc/systemd/system/${REFRESH_UNITS.refresh}.timer`, readFile("server/systemd/synapse-refresh.timer"), "0644"),
        root(
            `/etc/systemd/system/${REFRESH_UNITS.audit}.service`,
            unit("Check Synapse's Python packages against published advisories; rebuild its virtualenv when one is in force", " --if-advised"),
            "0644",
        ),
        root(`/etc/systemd/system/${REFRESH_UNITS.audit}.timer`, readFile("server/systemd/advisory-audit.timer"), "0644"),
    ];
}

export interface SynapseArgs {
    readonly target: Target;
    readonly build: SynapseBuild;
    /** The database role's password (written to the pgpass file). */
    readonly postgresPassword: pulumi.Output<string>;
    /** With database managed: the cluster Synapse uses instead of the local PostgreSQL. Default none. */
    readonly managedDatabase?: ManagedDatabaseConnection;
}

export class Synapse extends pulumi.ComponentResource {
    public readonly ready: pulumi.Resource;
    /** The admin's Matrix id. */
    public readonly adminUserId: string;

    constructor(name: string, args: SynapseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:Synapse", name, {}, opts);
        const b = args.build;
        const s = b.synapse;
        const install = new RemoteStep(
            `${name}-synapse`,
            {
                target: args.target,
                script: "synapse.sh",
                libraries: ["adopt.sh", "venv.sh"],
                handlesSecrets: true,
                env: {
                    DOMAIN: b.names.server,
                    DATA_DIR: b.dataDir,
                    SYNAPSE_VERSION: s.version,
                    PIP_INDEX_URL: s.pipIndexUrl,
                    ADVISORY_AUDIT: s.advisoryFeedUrl === "" ? "off" : "on",
                    ADOPT_SIGNING_KEY: s.adopt.signingKey,
                    ADOPT_SQLITE_DATABASE: s.adopt.sqliteDatabase,
                    ADOPT_POSTGRES_DUMP: s.adopt.postgresDump,
                    ADOPT_MEDIA_STORE: s.adopt.mediaStore,
                    ...(synapseRequirements(b).length > 0 ? { SYNAPSE_REQUIREMENTS: synapseRequirements(b).join(" ") } : {}),
                },
                files: synapseFiles(
                    b,
                    {
                        postgresPassword: args.postgresPassword,
                        registrationSharedSecret: s.registrationSharedSecret,
                        macaroonSecretKey: s.macaroonSecretKey,
                        formSecret: s.formSecret,
                        recaptchaPrivateKey: s.recaptcha?.privateKey,
                    },
                    args.managedDatabase,
                ),
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        const admin = new RemoteStep(
            `${name}-synapse-admin`,
            {
                target: args.target,
                script: "admin.sh",
                handlesSecrets: true,
                env: { ADMIN_USER: s.adminUser, ADMIN_PASSWORD: s.adminPassword, DOMAIN: b.names.server },
            },
            { parent: this, dependsOn: [install.command] },
        );
        this.ready = install.command;
        this.adminUserId = `@${s.adminUser}:${b.names.server}`;
        this.registerOutputs({ adminUserId: this.adminUserId, admin: admin.stdout });
    }
}
