// The typed stack configuration: what every component is built from. Nothing here reads anything.
import type * as pulumi from "@pulumi/pulumi";
import type { MemoryPreset } from "./presets";

/** The droplet's SSH key: a new key made from sshPublicKey, or one already in the account (doSshKey). */
export type DropletSshKey = { readonly kind: "new"; readonly publicKey: string } | { readonly kind: "account"; readonly fingerprintOrId: string };

/** A new DigitalOcean droplet with its volume, reserved IP and firewall. */
export interface DropletHosting {
    readonly kind: "digitalocean";
    /** Region slug, e.g. nyc3. */
    readonly region: string;
    /** Size slug; s-1vcpu-1gb is the 1 GB droplet. */
    readonly size: string;
    /** Image slug, e.g. debian-13-x64. Changing it replaces the droplet (the volume and reserved IP stay). */
    readonly image: string;
    /** Data volume size in GB; it can grow in place. */
    readonly volumeSizeGb: number;
    /** Give the droplet IPv6. */
    readonly ipv6: boolean;
    readonly sshKey: DropletSshKey;
    /** Who may reach port 22. */
    readonly sshAllowedCidrs: readonly string[];
}

/** A server the operator already has, reached over SSH. */
export interface ExistingHosting {
    readonly kind: "existing";
    readonly host: string;
    readonly port: number;
    readonly user: string;
    /** The machine's identity (e.g. its /etc/machine-id); "" when not given. */
    readonly serverId: string;
}

export type Hosting = DropletHosting | ExistingHosting;

export type Dns = { readonly kind: "cloudflare"; readonly zoneId: string } | { readonly kind: "none" };

export type Registration = "closed" | "token" | "open";
type AcmeChallenge = "dns-cloudflare" | "http";

export interface TlsSettings {
    readonly acmeServer: string;
    readonly challenge: AcmeChallenge;
    readonly cloudflareDnsToken?: pulumi.Output<string>;
    readonly apexOnServer: boolean;
    /** The CA named in the CAA record ("" for no CAA record). */
    readonly caaIssuer: string;
    readonly nginxWorkerProcesses: number;
    /**
     * The daily status check's disk threshold (diskAlertPercent): a file system at this use or above
     * fails it. Here because the check is installed by the certificates step, where the certificate
     * expiry check it grew from was.
     */
    readonly diskAlertPercent: number;
}

export interface PostgresSettings {
    readonly password: pulumi.Output<string>;
    readonly sharedBuffersMb: number;
    readonly workMemMb: number;
    readonly maxConnections: number;
    readonly lowMemory: boolean;
    /**
     * Room on the data volume kept back for PostgreSQL (postgresDiskReserveMb, MiB): ext4's reserved
     * blocks, usable by the postgres group (and root), not by Synapse. When media fills the volume,
     * logins and messages still have room. 0: the volume's reserve is left as it is.
     */
    readonly diskReserveMb: number;
}

/**
 * Where Synapse's database lives (`database`): PostgreSQL on the server (the default), or a
 * DigitalOcean managed cluster (components/managedDatabase.ts), hosting digitalocean only.
 */
export type DatabaseSettings =
    | { readonly kind: "local" }
    | {
          readonly kind: "managed";
          /** managedDatabaseVersion: the PostgreSQL major version, e.g. "17". */
          readonly version: string;
          /** managedDatabaseSize: the node size slug, e.g. db-s-1vcpu-1gb. */
          readonly size: string;
          /** The connections the size admits to users (DigitalOcean's figure, its own 3 already taken off). */
          readonly connectionLimit: number;
          /** Each Synapse process's pool (cp_max), sized so that every process fits under connectionLimit. */
          readonly poolMax: number;
      };

/** An old server's data to bring in once (paths on the server; "" when not adopting). */
export interface AdoptSettings {
    readonly signingKey: string;
    readonly sqliteDatabase: string;
    readonly postgresDump: string;
    readonly mediaStore: string;
}

export interface SynapseSettings {
    readonly version: string;
    readonly pipIndexUrl: string;
    /** The PyPI JSON API the daily advisory audit reads (e.g. https://pypi.org/pypi); "" for no audit. */
    readonly advisoryFeedUrl: string;
    readonly adminUser: string;
    readonly adminPassword: pulumi.Output<string>;
    readonly registrationSharedSecret: pulumi.Output<string>;
    readonly macaroonSecretKey: pulumi.Output<string>;
    readonly formSecret: pulumi.Output<string>;
    readonly registration: Registration;
    readonly recaptcha?: { readonly publicKey: string; readonly privateKey: pulumi.Output<string> };
    readonly allowGuestAccess: boolean;
    /** Synapse's session_lifetime (e.g. "90d"); "" for logins that last until logout. */
    readonly sessionLifetime: string;
    readonly urlPreviews: boolean;
    readonly maxUploadSizeMb: number;
    readonly cacheFactor: number;
    readonly presence: boolean;
    /** Synapse durations ("90d"); "" for none. */
    readonly remoteMediaRetention: string;
    readonly forgottenRoomRetention: string;
    /** limit_remote_rooms' complexity; 0: no limit. */
    readonly remoteRoomComplexityLimit: number;
    readonly jemalloc: boolean;
    /** 0: no cache autotuning. */
    readonly cacheMemoryMb: number;
    readonly databasePoolMax: number;
    readonly logBackupCount: number;
    /**
     * synapseWorkers: 0 for one process; otherwise that many generic workers, plus one federation
     * sender and one media worker, over Redis (synapseWorkers.ts).
     */
    readonly workers: number;
    readonly federationIpAllowlist: readonly string[];
    readonly trustedKeyServers: readonly string[];
    readonly adopt: AdoptSettings;
}

/**
 * The nightly database housekeeping (components/housekeeping.ts): a report of the database's size and
 * largest tables, and synapse_auto_compressor in bounded chunks when `compressor` is on.
 */
export interface HousekeepingSettings {
    /** stateCompressor: run the compressor at all (the report runs either way). */
    readonly compressor: boolean;
    /** stateCompressorVersion: the PyPI release of synapse-auto-compressor. */
    readonly compressorVersion: string;
    /** stateCompressorChunkSize: state groups per chunk. */
    readonly chunkSize: number;
    /** stateCompressorChunks: chunks per run. */
    readonly chunks: number;
    /** stateCompressorMemoryMb: the unit's MemoryMax, in MB. */
    readonly memoryMaxMb: number;
    /** indexRebuild: rebuild the hot tables' indexes online once they have doubled (the report runs either way). */
    readonly indexRebuild: boolean;
}

export interface BackupSettings {
    readonly keep: number;
    readonly rsyncTarget: string;
    /** The target's SSH host key ("<type> <base64>"); set exactly when rsyncTarget is. */
    readonly rsyncHostKey: string;
    /** Encrypts the dump and keys.tar of each backup; undefined: not encrypted. */
    readonly passphrase?: pulumi.Output<string>;
}

export interface ElementSettings {
    readonly version: string;
    readonly downloadUrl: string;
    readonly signingKeyUrl: string;
    readonly signingKeyFingerprint: string;
    readonly brand: string;
    readonly roomDirectoryServers: readonly string[];
}

/**
 * DigitalOcean's own monitoring of the droplet (hosting digitalocean only; components/monitoring.ts):
 * alert policies on memory, disk and load, and an uptime check of the client API, mailed to adminEmail.
 */
export interface MonitoringSettings {
    /** monitoringAlerts: declare them at all. */
    readonly enabled: boolean;
    /** alertMemoryPercent: memory use above this, for 10 minutes. */
    readonly memoryPercent: number;
    /** diskAlertPercent, the daily status check's threshold too: disk use above this, for 5 minutes. */
    readonly diskPercent: number;
    /** alertLoad5: the 5-minute load average above this, for 10 minutes. */
    readonly load5: number;
}

/**
 * Where Synapse's media lives (mediaStorage, issue 14; components/mediaStorage.ts). `local`: the
 * data volume, as always. `spaces`: a private DigitalOcean Spaces bucket through Synapse's S3 storage
 * provider, the volume a cache bounded by age and size.
 */
export type MediaStorageSettings =
    | { readonly kind: "local" }
    | {
          readonly kind: "spaces";
          /** The bucket's Spaces region (spacesRegion, or doRegion). */
          readonly region: string;
          /** The bucket's name (spacesBucket, or <domain>-media). */
          readonly bucket: string;
          readonly accessKeyId: pulumi.Output<string>;
          readonly secretKey: pulumi.Output<string>;
          /** mediaCacheDays: local copies not read for this long go (once verified in the bucket). */
          readonly cacheDays: number;
          /** mediaCacheMaxMb: the local cache's ceiling. */
          readonly cacheMaxMb: number;
      };

export interface ChatConfig {
    readonly domain: string;
    readonly adminEmail: string;
    readonly hosting: Hosting;
    /** The memory preset that gave the tuning keys the stack leaves unset their values (presets.ts). */
    readonly memoryPreset: MemoryPreset;
    readonly sshPrivateKey: pulumi.Output<string>;
    readonly dataDir: string;
    readonly swapSizeMb: number;
    /** journald's SystemMaxUse, in MB. */
    readonly journalMaxMb: number;
    /** The server's own nftables firewall (hostFirewall): the ports the service needs, SSH from sshAllowedCidrs. */
    readonly hostFirewall: boolean;
    /** Where SSH is allowed from (the cloud firewall's and the server's own). */
    readonly sshAllowedCidrs: readonly string[];
    readonly dns: Dns;
    readonly tls: TlsSettings;
    readonly postgres: PostgresSettings;
    /** database: local, or managed (issue 14). */
    readonly database: DatabaseSettings;
    readonly synapse: SynapseSettings;
    readonly backups: BackupSettings;
    readonly housekeeping: HousekeepingSettings;
    readonly element: ElementSettings;
    readonly monitoring: MonitoringSettings;
    readonly mediaStorage: MediaStorageSettings;
}
