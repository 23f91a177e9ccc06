// Where Synapse's database lives (`database`, issue 14): PostgreSQL on the server, or a DigitalOcean
// managed cluster. Read after Synapse's settings, whose processes and pool the cluster must admit.
import * as c from "./checks";
import { PROJECT, Reader } from "./reader";
import type { DatabaseSettings, Hosting, SynapseSettings } from "./types";

/**
 * Connections a managed PostgreSQL node admits to users: 25 per GiB of its memory, less the 3
 * DigitalOcean keeps for its own maintenance. DigitalOcean's "How to Manage Connection Pools"
 * (docs.digitalocean.com/products/databases/postgresql/how-to/manage-connection-pools/) gives the
 * smallest node (1 GB, 1 vCPU) 22 connections; its PostgreSQL limits page
 * (docs.digitalocean.com/products/databases/postgresql/details/limits/) lists the per-size figures.
 * The memory is read from the size slug (db-s-1vcpu-1gb, db-s-2vcpu-4gb, gd-2vcpu-8gb, ...).
 */
export function managedConnectionLimit(size: string): number | undefined {
    const m = /-(\d{1,3})gb$/.exec(size);
    return m ? 25 * Number(m[1]) - 3 : undefined;
}

/**
 * Connections kept free under the cluster's limit for what is not Synapse: the move's pg_restore and
 * its row counts (2), the nightly backup's pg_dump or the nightly housekeeping's psql (1: they never
 * run at once, housekeeping.ts), and an admin's psql (1).
 */
export const MANAGED_HEADROOM = 4;
/**
 * The PostgreSQL major version each Debian image's packages bring (bookworm 15, trixie 17): the
 * server's pg_dump, which the nightly backup dumps the cluster with, refuses a newer server.
 */
const IMAGE_POSTGRES: Readonly<Record<string, number>> = { "debian-12-x64": 15, "debian-13-x64": 17 };

/** Synapse's own default cp_max: a larger pool only adds idle connections to one process. */
const SYNAPSE_DEFAULT_CP_MAX = 10;

/** The Synapse processes that each hold a pool: the main one, and in worker mode the workers, the federation sender and the media worker. */
export const synapseProcesses = (workers: number) => (workers > 0 ? workers + 3 : 1);

export function readDatabase(r: Reader, kind: "local" | "managed", hosting: Hosting, synapse: SynapseSettings): DatabaseSettings {
    if (kind !== "managed") return { kind: "local" };
    if (hosting.kind !== "digitalocean") {
        r.fail(
            `${PROJECT}:database is managed, which needs hosting digitalocean (a DigitalOcean database cluster admits the droplet this stack makes; hosting is ${hosting.kind}): set database to local`,
        );
    }
    if (synapse.adopt.sqliteDatabase || synapse.adopt.postgresDump) {
        r.fail(
            `${PROJECT}:database is managed, but ${PROJECT}:${synapse.adopt.sqliteDatabase ? "adoptSqliteDatabase" : "adoptPostgresDump"} brings an old server's database into the local PostgreSQL: adopt with database local first, then set database to managed (README: Moving the database to managed PostgreSQL)`,
        );
    }
    const version = r.required("managedDatabaseVersion", (v) =>
        /^\d{2}$/.test(v) && Number(v) >= 14 ? undefined : "a PostgreSQL major version such as 17 (14 or newer: Synapse refuses older)",
    );
    const imagePostgres = hosting.kind === "digitalocean" ? IMAGE_POSTGRES[hosting.image] : undefined;
    if (imagePostgres !== undefined && Number(version) > imagePostgres) {
        r.fail(
            `${PROJECT}:managedDatabaseVersion (${version}) is newer than the PostgreSQL of dropletImage ${hosting.kind === "digitalocean" ? hosting.image : ""} (${imagePostgres}), whose pg_dump cannot dump it for the nightly backup: use ${imagePostgres}`,
        );
    }
    const size = r.required("managedDatabaseSize", c.checkSlug);
    const limit = managedConnectionLimit(size);
    if (limit === undefined) {
        r.problem("managedDatabaseSize", "a DigitalOcean database size slug that ends in its memory, such as db-s-1vcpu-1gb or db-s-2vcpu-4gb", size);
        return { kind: "managed", version, size, connectionLimit: 0, poolMax: 1 };
    }
    const processes = synapseProcesses(synapse.workers);
    const room = limit - MANAGED_HEADROOM;
    const what = `${processes} Synapse process${processes === 1 ? "" : "es"}`;
    let poolMax: number;
    if (r.isSet("databasePoolMax")) {
        poolMax = synapse.databasePoolMax;
        if (processes * poolMax > room) {
            r.fail(
                `${PROJECT}:databasePoolMax (${poolMax}) x ${what} does not fit the ${limit} connections ${PROJECT}:managedDatabaseSize (${size}) admits with ${MANAGED_HEADROOM} kept for backups, the move and psql: ` +
                    `lower databasePoolMax to at most ${Math.floor(room / processes)} (or unset it), or choose a larger size`,
            );
        }
    } else {
        poolMax = Math.min(SYNAPSE_DEFAULT_CP_MAX, Math.floor(room / processes));
        if (poolMax < 2) {
            r.fail(
                `${PROJECT}:managedDatabaseSize (${size}) admits ${limit} connections: too few for ${what} (${PROJECT}:synapseWorkers ${synapse.workers}) with 2 each and ${MANAGED_HEADROOM} kept for backups, the move and psql; choose a larger size or fewer workers`,
            );
        }
    }
    return { kind: "managed", version, size, connectionLimit: limit, poolMax };
}
