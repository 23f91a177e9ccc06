// Managed PostgreSQL (`database: managed`, issue 14): a DigitalOcean database cluster for Synapse, its
// synapse user, a database firewall that admits this droplet alone, and the cluster's CA for TLS
// verified to the host name (verify-full). Then one step on the droplet makes the database ready and
// moves the local one into it (files/steps/database-move.sh); Synapse's step, after it, switches.
//
// What the provider does, from terraform-provider-digitalocean (the provider @pulumi/digitalocean
// bridges; digitalocean/database/ at 401992a):
//  - resource_database_db.go: a database has only `name` and `cluster_id` (godo's
//    DatabaseCreateDBRequest{Name}). No encoding or locale can be asked for, so it gets whatever the
//    cluster's default is (not documented as C, and not checked against a real cluster here), and
//    Synapse refuses a database whose collation or ctype is not C (docs/postgres.md, "Fixing
//    incorrect COLLATE or CTYPE"; for new databases too since element-hq/synapse#17238). Its
//    `allow_unsafe_locale` lets Synapse start anyway, and Synapse's docs advise against it: a locale
//    library updated under the database corrupts its text indexes, which on a managed cluster
//    happens on the provider's schedule, not ours. So the step creates `synapse` itself as the
//    cluster's admin (doadmin, DigitalOcean's default administrative user), UTF8 with C collation
//    from template0 as Synapse documents, and checks the result; there is no `digitalocean.DatabaseDb`.
//  - resource_database_firewall.go: the rules are written with UpdateFirewallRules, which replaces
//    the cluster's whole list of trusted sources: one rule of type `droplet` leaves the droplet as
//    the only thing that may connect (DigitalOcean counts its public and private addresses).
//  - datasource_database_ca.go: `certificate` is godo's DatabaseCA.Certificate ([]byte, decoded from
//    the API's base64), i.e. the PEM itself; the step checks that it is one.
import * as pulumi from "@pulumi/pulumi";
import * as digitalocean from "@pulumi/digitalocean";
import type { DatabaseSettings } from "./config";
import type { Target } from "./host";
import { RemoteStep } from "./remoteStep";

/** The cluster's CA on the server: public, read by Synapse, pg_dump and psql. */
export const MANAGED_DB_CA_PATH = "/etc/phillymesh-chat/managed-database-ca.crt";
/** libpq's service file for the cluster (service `synapse`): what the backups and an admin's psql use. */
export const MANAGED_DB_SERVICE_FILE = "/etc/phillymesh-chat/managed-database.service.conf";
/** The synapse user's password for the service file, postgres's own (the backup dumps as postgres). */
export const MANAGED_DB_PGPASS = "/etc/phillymesh-chat/managed-database.pgpass";
/** The database and the user Synapse uses in the cluster. */
export const MANAGED_DB_NAME = "synapse";
export const MANAGED_DB_USER = "synapse";

type ManagedSettings = Extract<DatabaseSettings, { kind: "managed" }>;

/** Where Synapse finds the cluster: known once it exists. */
export interface ManagedDatabaseConnection {
    readonly host: pulumi.Output<string>;
    readonly port: pulumi.Output<number>;
    /** The synapse user's password, made by DigitalOcean: a secret. */
    readonly password: pulumi.Output<string>;
    /** Each Synapse process's pool (cp_max). */
    readonly poolMax: number;
}

/** libpq's password file line: ':' and '\\' escaped as its format requires. */
export function passfileLine(host: string, port: number, password: string): string {
    const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/:/g, "\\:");
    return `${esc(host)}:${port}:${MANAGED_DB_NAME}:${MANAGED_DB_USER}:${esc(password)}`;
}

/**
 * The service file: the cluster over TLS verified against its CA and its host name. `paths`: where the
 * CA and the passfile are (the server's fixed paths; tests/databaseMove.test.ts puts them elsewhere).
 */
export function serviceFile(host: string, port: number, paths = { ca: MANAGED_DB_CA_PATH, passfile: MANAGED_DB_PGPASS }): string {
    return [
        "# Managed by phillymesh-chat: the managed PostgreSQL (database: managed). Use: PGSERVICEFILE=<this file> psql service=synapse",
        "[synapse]",
        `host=${host}`,
        `port=${port}`,
        `dbname=${MANAGED_DB_NAME}`,
        `user=${MANAGED_DB_USER}`,
        "sslmode=verify-full",
        `sslrootcert=${paths.ca}`,
        `passfile=${paths.passfile}`,
    ].join("\n");
}

/** The cluster's name in DigitalOcean: lower-case letters, digits and '-'. */
function clusterName(name: string): string {
    return `${name}-synapse-db`.replace(/[^a-z0-9-]/g, "-").slice(0, 63);
}

export interface ManagedDatabaseArgs {
    readonly settings: ManagedSettings;
    /** The droplet's region: the cluster lives beside it. */
    readonly region: string;
    /** The droplet the firewall admits (and nothing else). */
    readonly dropletId: pulumi.Input<string>;
    /** The droplet, where the step runs. */
    readonly target: Target;
}

export class ManagedDatabase extends pulumi.ComponentResource {
    public readonly connection: ManagedDatabaseConnection;
    /** The step that made the database ready and moved the local one in: Synapse's step waits for it. */
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: ManagedDatabaseArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:ManagedDatabase", name, {}, opts);
        const child = { parent: this };
        const s = args.settings;

        // Data is sacred: protected like the volume, so no destroy, rename or replacing edit (a new
        // name or engine; resource_database_cluster.go makes version and region in-place updates:
        // UpgradeMajorVersion and Migrate) can delete it; the engine refuses instead.
        const cluster = new digitalocean.DatabaseCluster(
            `${name}-database`,
            {
                name: clusterName(name),
                engine: "pg",
                version: s.version,
                size: s.size,
                region: args.region,
                nodeCount: 1,
                tags: ["phillymesh-chat"],
            },
            { ...child, protect: true },
        );
        // Its password is made by DigitalOcean and comes back as a secret output. Not protected: it
        // holds no data (the tables are the database's), and DigitalOcean refuses to delete a user
        // that still owns them.
        const user = new digitalocean.DatabaseUser(`${name}-database-user`, { clusterId: cluster.id, name: MANAGED_DB_USER }, child);
        // The droplet's id, and nothing else: every other address is refused by the cluster.
        const firewall = new digitalocean.DatabaseFirewall(
            `${name}-database-firewall`,
            { clusterId: cluster.id, rules: [{ type: "droplet", value: pulumi.output(args.dropletId).apply(String) }] },
            child,
        );
        const ca = digitalocean.getDatabaseCaOutput({ clusterId: cluster.id }, { parent: this });

        const host = cluster.host;
        const port = cluster.port;
        const password = pulumi.secret(user.password);
        const step = new RemoteStep(
            `${name}-database-move`,
            {
                target: args.target,
                script: "database-move.sh",
                handlesSecrets: true,
                env: {
                    MANAGED_HOST: host,
                    MANAGED_PORT: port.apply(String),
                    MANAGED_CA: MANAGED_DB_CA_PATH,
                    MANAGED_SERVICE_FILE: MANAGED_DB_SERVICE_FILE,
                    // The admin creates the database (C collation) and grants it; used by this step only.
                    MANAGED_ADMIN_USER: cluster.user,
                    MANAGED_ADMIN_PASSWORD: pulumi.secret(cluster.password),
                    MANAGED_ADMIN_DB: cluster.database,
                },
                files: [
                    { path: MANAGED_DB_CA_PATH, content: ca.certificate, mode: "0644", owner: "root:root" },
                    { path: MANAGED_DB_SERVICE_FILE, content: pulumi.all([host, port]).apply(([h, p]) => serviceFile(h, p)), mode: "0644", owner: "root:root" },
                    {
                        path: MANAGED_DB_PGPASS,
                        content: pulumi.secret(pulumi.all([host, port, password]).apply(([h, p, pw]) => passfileLine(h, p, pw))),
                        mode: "0600",
                        owner: "postgres:postgres",
                    },
                ],
            },
            // After the firewall admits the droplet (else the step cannot connect) and the user exists.
            { parent: this, dependsOn: [...dependsOnList(opts?.dependsOn), firewall, user] },
        );
        this.ready = step.command;
        this.connection = { host, port, password, poolMax: s.poolMax };
        this.registerOutputs({ host, port });
    }
}

function dependsOnList(d: pulumi.ComponentResourceOptions["dependsOn"]): pulumi.Input<pulumi.Resource>[] {
    if (d === undefined) return [];
    return Array.isArray(d) ? d : [d as pulumi.Input<pulumi.Resource>];
}
