// The DigitalOcean stand-in's managed PostgreSQL: DatabaseCluster, DatabaseUser, DatabaseFirewall and
// getDatabaseCa, acting on a real PostgreSQL in a testbed guest of its own (testbed/cloud/do-database.sh).
//
// What it mirrors (terraform-provider-digitalocean at 401992a, digitalocean/database/):
//   DatabaseCluster  resource_database_cluster.go: name, engine, private_network_uuid, project_id
//                    ForceNew; size and node_count (Resize), region (Migrate), version
//                    (UpgradeMajorVersion), tags, maintenance_window update IN PLACE; region lower-cased
//                    (StateFunc); `version` required (transitionVersionToRequired: "The argument
//                    \"version\" is required, but no definition was found."); host, private_host, port,
//                    uri (sensitive), private_uri (sensitive), database, user, password (sensitive), urn
//                    computed. Create BOOTS A GUEST do-db<N> from the trixie template (PostgreSQL 17) at
//                    an address of the droplet pool: TLS only, port 25060, a CA of its own and a server
//                    certificate whose SAN is the cluster's host name (<name>-do-user-1-0.b.db.ondigitalocean.com,
//                    served by the testbed DNS), the admin `doadmin` (CREATEDB, CREATEROLE, REPLICATION,
//                    BYPASSRLS; not a superuser, as on DigitalOcean) with a random password, database
//                    `defaultdb`. Delete (Databases.Delete) destroys the guest.
//   DatabaseUser     resource_database_user.go: name, cluster_id ForceNew; password and role computed
//                    (the password sensitive); id <cluster_id>/user/<name> (makeDatabaseUserID). A
//                    LOGIN role with a random password, made by the API's own superuser access (not by
//                    doadmin). Delete: DROP ROLE, which PostgreSQL refuses while the role owns objects
//                    (DigitalOcean refuses too; the error text here is PostgreSQL's).
//   DatabaseFirewall resource_database_firewall.go: cluster_id ForceNew; `rule` a required set of
//                    { type: ip_addr|droplet|k8s|tag|app (StringInSlice), value (NoZeroValues) };
//                    create and update call UpdateFirewallRules, which REPLACES the cluster's whole list
//                    of trusted sources; delete sends an empty list (the cluster is open again); id
//                    id.PrefixedUniqueId(cluster_id + "-"). Here the list becomes pg_hba.conf: `hostssl`
//                    with scram-sha-256 for each source's addresses (a droplet: its IPv4 and IPv6), no
//                    other line but the API's local peer access; no rules: every address.
//   getDatabaseCa    datasource_database_ca.go: `certificate` is godo's DatabaseCA.Certificate, the PEM
//                    itself; here the cluster guest's CA.
//
// NOT covered: engines other than pg; versions other than the template's PostgreSQL (17); more than
// one node (standbys), read replicas, connection pools, DatabaseDb, the advanced/postgres config
// resources, storage_size_mib and autoscale, maintenance windows (recorded only), backups and
// point-in-time recovery, private networking/VPCs (private_host is the host); the in-place updates
// Resize (only the guest's memory cap changes), Migrate (region) and UpgradeMajorVersion (version),
// which fail at apply as not in the stand-in; firewall rules of type k8s, tag and app (refused at
// preview); a firewall that refuses at the network (here PostgreSQL refuses the connection with
// "no pg_hba.conf entry"; DigitalOcean's trusted sources drop it before PostgreSQL); a droplet
// rule that follows a droplet's later addresses (the addresses are read when the rules are written);
// the connection limit of the size (max_connections is 25, the 1 GB node's 22 + 3 reserved);
// refresh and import (no read). Cluster ids are UUIDs; the API's error texts for an unknown cluster
// (404) are godo's shape with our wording.
//
// Serialized into the state with the providers (the SDK's function serializer captures what they
// use): plain functions and constants only, requiring what they need themselves.
import type * as pulumi from "@pulumi/pulumi";
import { isUnknown, plain } from "../shimKit";
import { apiError, cloudDir, cloudScript, dropletOf, freeAddress, takenAddresses, withAccount } from "./account";
import { prefixedUniqueId, tfDiff } from "./terraform";

/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */

const DB_PORT = 25060;
/** The versions the cluster guest can run: trixie's PostgreSQL. */
const DB_VERSIONS = ["17"];
const DB_RULE_TYPES = ["ip_addr", "droplet", "k8s", "tag", "app"];

/** Runs testbed/cloud/do-database.sh OP ARGS...; resolves with its stdout, trimmed. */
async function dbOp(props: any, args: string[], stdin?: string): Promise<string> {
    return (await cloudScript(props, "do-database.sh", args, stdin)).trim();
}

/** The memory of a database size slug (db-s-1vcpu-1gb, db-s-2vcpu-4gb, gd-2vcpu-8gb, ...), in MiB. */
function dbMemory(size: string): number | undefined {
    const m = /^(db|gd|so1_5|m)-[a-z0-9-]*?(\d{1,3})gb$/.exec(String(size));
    return m ? Number(m[2]) * 1024 : undefined;
}

function clusterOf(account: any, id: unknown): any {
    return (account.databases ?? []).find((c: any) => c.id === id);
}

const sqlIdent = (s: string) => `"${String(s).replace(/"/g, '""')}"`;
const sqlLiteral = (s: string) => `'${String(s).replace(/'/g, "''")}'`;
const randomPassword = () => "AVNS_" + require("crypto").randomBytes(15).toString("base64url");

export const databaseClusterProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        for (const k of ["name", "engine", "size", "region", "nodeCount"])
            if (!isUnknown(news[k]) && (news[k] === undefined || news[k] === "" || news[k] === 0))
                failures.push({ property: k, reason: `expected "${k}" to not be an empty string or whitespace` });
        if (!isUnknown(news.version) && !news.version)
            failures.push({ property: "version", reason: 'The argument "version" is required, but no definition was found.' });
        if (news.engine && !isUnknown(news.engine) && news.engine !== "pg")
            failures.push({ property: "engine", reason: `engine ${news.engine} is not in the testbed stand-in (pg only)` });
        if (news.version && !isUnknown(news.version) && !DB_VERSIONS.includes(String(news.version)))
            failures.push({
                property: "version",
                reason: `PostgreSQL ${news.version} is not in the testbed stand-in (its cluster guest runs ${DB_VERSIONS.join(", ")})`,
            });
        if (news.nodeCount !== undefined && !isUnknown(news.nodeCount) && Number(news.nodeCount) !== 1)
            failures.push({ property: "nodeCount", reason: "standby nodes are not in the testbed stand-in (node_count 1 only)" });
        if (news.size && !isUnknown(news.size) && dbMemory(news.size) === undefined)
            failures.push({ property: "size", reason: `${news.size} is not a database size slug the testbed stand-in knows (db-s-1vcpu-1gb, ...)` });
        for (const k of ["privateNetworkUuid", "projectId", "storageSizeMib", "backupRestore", "evictionPolicy", "sqlMode"])
            if (news[k] !== undefined) failures.push({ property: k, reason: `${k} is not in the testbed stand-in` });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, {
            forceNew: ["name", "engine", "privateNetworkUuid", "projectId"],
            update: ["size", "nodeCount", "region", "version", "tags", "maintenanceWindows"],
            sets: ["tags"],
            computed: ["privateNetworkUuid", "projectId"],
            normalize: { region: (v: any) => (v === undefined ? v : String(v).toLowerCase()) },
        });
    },
    async create(inputs: any) {
        const crypto = require("crypto");
        const region = String(inputs.region).toLowerCase();
        const fail = (status: number, msg: string) => apiError("Error creating database cluster", "POST", "databases", status, msg);
        const password = randomPassword();
        // Reserved under the account's lock; the guest boots outside it (a minute and more).
        const c = await withAccount((a) => {
            a.databases ??= [];
            a.nextDatabaseGuest ??= 1;
            if (a.databases.some((x: any) => x.name === inputs.name)) throw fail(422, `name ${inputs.name} is already in use (our wording)`);
            const ip = freeAddress(process.env.TESTBED_DO_DROPLET_IPS || "100-129", new Set([...takenAddresses(a), ...a.databases.map((x: any) => x.ip)]));
            if (!ip) throw fail(422, "the testbed's droplet address pool is exhausted (TESTBED_DO_DROPLET_IPS)");
            const c = {
                id: crypto.randomUUID(),
                name: inputs.name,
                guest: `do-db${a.nextDatabaseGuest++}`,
                ip,
                host: `${inputs.name}-do-user-1-0.b.db.ondigitalocean.com`,
                region,
                size: inputs.size,
                version: String(inputs.version),
                status: "creating",
                users: [],
                firewallRules: [],
                createdAt: new Date().toISOString(),
            };
            a.databases.push(c);
            return c;
        });
        let caDir: string;
        try {
            caDir = await dbOp(inputs, ["cluster-boot", c.guest, c.ip, c.host, `${dbMemory(inputs.size)}M`, c.version], password);
        } catch (e) {
            await dbOp(inputs, ["cluster-destroy", c.guest]).catch(() => undefined);
            await withAccount((a) => void (a.databases = a.databases.filter((x: any) => x.id !== c.id)));
            throw new Error(`Error creating database cluster: ${(e as Error).message}`);
        }
        await withAccount((a) => Object.assign(clusterOf(a, c.id), { status: "online", caFile: require("path").join(caDir, "ca.crt") }));
        const uri = `postgresql://doadmin:${password}@${c.host}:${DB_PORT}/defaultdb?sslmode=require`;
        return {
            id: c.id,
            outs: plain({
                ...inputs,
                region,
                version: c.version,
                host: c.host,
                privateHost: c.host,
                port: DB_PORT,
                user: "doadmin",
                password,
                database: "defaultdb",
                uri,
                privateUri: uri,
                clusterUrn: `do:dbaas:${c.id}`,
                __guest: c.guest,
            }),
        };
    },
    async update(id: string, olds: any, news: any) {
        const outs = { ...olds, ...news, region: String(news.region).toLowerCase() };
        await withAccount(async (a) => {
            const c = clusterOf(a, id);
            if (!c) throw apiError("Error updating database cluster", "GET", `databases/${id}`, 404, "cluster not found (our wording)");
            if (String(news.version) !== c.version)
                throw new Error(`Error upgrading version for database cluster: UpgradeMajorVersion is not in the testbed stand-in`);
            if (String(news.region).toLowerCase() !== c.region) throw new Error(`Error migrating database cluster: Migrate is not in the testbed stand-in`);
            if (news.size !== c.size) {
                const mem = dbMemory(news.size);
                if (mem === undefined) throw apiError("Error resizing database cluster", "PUT", `databases/${id}/resize`, 422, "invalid size (our wording)");
                const cp = require("child_process");
                const path = require("path");
                cp.execFileSync("bash", [
                    path.join(process.env.TESTBED_REPO || news.__repo, "testbed", "cloud", "do-host.sh"),
                    "droplet-mem",
                    c.guest,
                    `${mem}M`,
                ]);
                c.size = news.size;
            }
        });
        return { outs: plain(outs) };
    },
    async delete(id: string, props: any) {
        const c = await withAccount((a) => clusterOf(a, id));
        if (!c) return;
        await dbOp(props, ["cluster-destroy", c.guest]);
        await withAccount((a) => void (a.databases = a.databases.filter((x: any) => x.id !== id)));
    },
};

export const databaseUserProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        for (const k of ["name", "clusterId"])
            if (!isUnknown(news[k]) && !news[k]) failures.push({ property: k, reason: `expected "${k}" to not be an empty string or whitespace` });
        for (const k of ["mysqlAuthPlugin", "settings"])
            if (news[k] !== undefined) failures.push({ property: k, reason: `${k} is not in the testbed stand-in` });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        return tfDiff(olds, news, { forceNew: ["name", "clusterId"], update: [] });
    },
    async create(inputs: any) {
        const password = randomPassword();
        await withAccount(async (a) => {
            const c = clusterOf(a, inputs.clusterId);
            if (!c) throw apiError("Error creating Database User", "POST", `databases/${inputs.clusterId}/users`, 404, "cluster not found (our wording)");
            if (inputs.name === "doadmin" || c.users.includes(inputs.name))
                throw apiError("Error creating Database User", "POST", `databases/${c.id}/users`, 422, `user ${inputs.name} already exists (our wording)`);
            await dbOp(inputs, ["cluster-sql", c.guest], `CREATE ROLE ${sqlIdent(inputs.name)} LOGIN PASSWORD ${sqlLiteral(password)};\n`);
            c.users.push(inputs.name);
        });
        return { id: `${inputs.clusterId}/user/${inputs.name}`, outs: plain({ ...inputs, role: "normal", password }) };
    },
    async delete(_id: string, props: any) {
        await withAccount(async (a) => {
            const c = clusterOf(a, props.clusterId);
            if (!c || !c.users.includes(props.name)) return; // already gone: success, as a 404 is
            try {
                await dbOp(props, ["cluster-sql", c.guest], `DROP ROLE ${sqlIdent(props.name)};\n`);
            } catch (e) {
                throw new Error(`Error deleting Database User: ${(e as Error).message}`);
            }
            c.users = c.users.filter((u: string) => u !== props.name);
        });
    },
};

/** The addresses a rule admits: an ip_addr its value, a droplet its IPv4 (and IPv6) as /32 (/128). */
function ruleSources(a: any, rules: any[]): string[] {
    const out: string[] = [];
    for (const r of rules) {
        if (r.type === "ip_addr") out.push(String(r.value).includes("/") ? String(r.value) : `${r.value}/${String(r.value).includes(":") ? 128 : 32}`);
        else if (r.type === "droplet") {
            const d = dropletOf(a, r.value);
            if (!d) throw apiError("Error updating DatabaseFirewall", "PUT", "databases/firewall", 422, `droplet ${r.value} not found (our wording)`);
            out.push(`${d.ipv4}/32`);
            if (d.ipv6) out.push(`${d.ipv6}/128`);
        } else throw new Error(`rule type ${r.type} is not in the testbed stand-in`);
    }
    return out;
}

async function writeRules(props: any, clusterId: string, rules: any[], what: string): Promise<void> {
    await withAccount(async (a) => {
        const c = clusterOf(a, clusterId);
        if (!c) throw apiError(`Error ${what} DatabaseFirewall`, "PUT", `databases/${clusterId}/firewall`, 404, "cluster not found (our wording)");
        const sources = ruleSources(a, rules);
        await dbOp(props, ["cluster-hba", c.guest], sources.map((s) => s + "\n").join(""));
        c.firewallRules = rules.map((r: any) => ({ type: r.type, value: String(r.value) }));
        c.trustedSources = sources;
    });
}

export const databaseFirewallProvider: pulumi.dynamic.ResourceProvider = {
    async check(_olds: any, news: any) {
        const failures: { property: string; reason: string }[] = [];
        if (!isUnknown(news.clusterId) && !news.clusterId) failures.push({ property: "clusterId", reason: 'expected "cluster_id" to not be an empty string' });
        const rules = news.rules ?? [];
        if (!isUnknown(rules) && rules.length === 0)
            failures.push({ property: "rules", reason: 'The argument "rule" is required, but no definition was found.' });
        rules.forEach((r: any, i: number) => {
            if (isUnknown(r)) return;
            if (!isUnknown(r.type) && !DB_RULE_TYPES.includes(r.type))
                failures.push({ property: `rules[${i}].type`, reason: `expected rule.${i}.type to be one of ${JSON.stringify(DB_RULE_TYPES)}, got ${r.type}` });
            else if (["k8s", "tag", "app"].includes(r.type))
                failures.push({ property: `rules[${i}].type`, reason: `rule type ${r.type} is not in the testbed stand-in` });
            if (!isUnknown(r.value) && !r.value)
                failures.push({ property: `rules[${i}].value`, reason: `expected "rule.${i}.value" to not be an empty string` });
        });
        return { inputs: news, failures };
    },
    async diff(_id: string, olds: any, news: any) {
        const norm = (rs: any) => (rs ?? []).map((r: any) => ({ type: r.type, value: String(r.value) }));
        return tfDiff(
            { ...olds, rules: norm(olds.rules) },
            { ...news, rules: norm(news.rules) },
            { forceNew: ["clusterId"], update: ["rules"], sets: ["rules"] },
        );
    },
    async create(inputs: any) {
        await writeRules(inputs, inputs.clusterId, inputs.rules, "creating");
        return { id: prefixedUniqueId(`${inputs.clusterId}-`), outs: plain(inputs) };
    },
    async update(_id: string, _olds: any, news: any) {
        await writeRules(news, news.clusterId, news.rules, "updating");
        return { outs: plain(news) };
    },
    async delete(_id: string, props: any) {
        const gone = await withAccount((a) => !clusterOf(a, props.clusterId));
        if (gone) return;
        await writeRules(props, props.clusterId, [], "deleting");
    },
};

export interface GetDatabaseCaArgs {
    clusterId: string;
}
export interface GetDatabaseCaResult {
    clusterId: string;
    certificate: string;
    id: string;
}

/** getDatabaseCa: the cluster guest's CA, read in the program's process. */
export async function getDatabaseCa(args: GetDatabaseCaArgs): Promise<GetDatabaseCaResult> {
    const fs = require("fs");
    const path = require("path");
    const file = path.join(cloudDir(), "do-account.json");
    const account = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : {};
    const c = clusterOf(account, args.clusterId);
    if (!c?.caFile) throw apiError("Error retrieving database CA certificate", "GET", `databases/${args.clusterId}/ca`, 404, "cluster not found (our wording)");
    return { clusterId: args.clusterId, certificate: fs.readFileSync(c.caFile, "utf8"), id: args.clusterId };
}

/* eslint-enable @typescript-eslint/no-explicit-any, @typescript-eslint/no-require-imports */
