// Where things are: the host names the service answers on, its ports, the certificate's name and the
// paths on the server. Components, templates and scripts get these as values from here; nothing else
// spells them out.

/** The names under the community's domain. */
export interface Hostnames {
    /** The Matrix server name (user ids are @name:<server>); the certificate must be valid for it. */
    readonly server: string;
    /** The homeserver (clients on 443, federation on 8448). */
    readonly matrix: string;
    /** Element Web, on an origin of its own. */
    readonly chat: string;
}

export function hostnames(domain: string): Hostnames {
    return { server: domain, matrix: `matrix.${domain}`, chat: `chat.${domain}` };
}

export const PORTS = {
    ssh: 22,
    http: 80,
    https: 443,
    /** Server-to-server federation (nginx, TLS). */
    federation: 8448,
    /** Synapse's plain HTTP listener, on 127.0.0.1 only, behind nginx. */
    synapse: 8008,
    postgres: 5432,
    /** Worker mode (synapseWorkers): the main process's replication listener, on 127.0.0.1 only. */
    synapseReplication: 9093,
    /** Worker mode: the media worker's HTTP listener; generic worker i listens on this + i. 127.0.0.1 only. */
    synapseMediaWorker: 8090,
    /** Worker mode: Redis, on the loopback addresses only. */
    redis: 6379,
} as const;

/** The certbot lineage that holds every name: /etc/letsencrypt/live/<name>/. */
export const CERT_NAME = "matrix-chat";

/** Fixed paths on the server (everything that is data is below dataDir, see dataPaths). */
export const SERVER_PATHS = {
    synapseConfigDir: "/etc/matrix-synapse",
    synapseVenvs: "/opt/synapse/venvs",
    synapseCurrent: "/opt/synapse/current",
    elementRoot: "/var/www/element",
    certificateDir: `/etc/letsencrypt/live/${CERT_NAME}`,
    /** Worker mode: each worker's configuration and the replication and Redis secrets. */
    synapseWorkersDir: "/etc/matrix-synapse/workers",
    /** Worker mode: Synapse's Redis client libraries (its `redis` extra), beside the virtualenvs. */
    synapseRedisLib: "/opt/synapse/redis-lib",
} as const;

/** Paths of the data below dataDir (the volume): what must outlive the server. */
export function dataPaths(dataDir: string) {
    const synapse = `${dataDir}/synapse`;
    return {
        synapse,
        media: `${synapse}/media`,
        signingKey: `${synapse}/keys/signing.key`,
        secrets: `${synapse}/secrets`,
        backups: `${dataDir}/backups`,
    };
}

/** The public URLs. */
export function urls(names: Hostnames) {
    return {
        homeserver: `https://${names.matrix}`,
        webClient: `https://${names.chat}`,
        federationTester: `https://federationtester.matrix.org/api/report?server_name=${names.server}`,
    };
}
