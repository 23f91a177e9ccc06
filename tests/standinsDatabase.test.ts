// The DigitalOcean stand-in's managed PostgreSQL (testbed/deploy/digitalocean/database.ts), at plan
// time and on its account: what terraform-provider-digitalocean's schema replaces, updates and refuses,
// and getDatabaseCa reading the cluster's CA. Nothing here boots a guest (that is drill 25's part).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as dox from "../testbed/deploy/digitalocean";

let dir: string;
const saved = { TESTBED_DIR: process.env.TESTBED_DIR, TESTBED_REPO: process.env.TESTBED_REPO };
beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "standins-database-"));
    process.env.TESTBED_DIR = dir;
    process.env.TESTBED_REPO = "/nonexistent-repo"; // a host operation would fail loudly
});
afterEach(() => {
    fs.rmSync(dir, { recursive: true, force: true });
    for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
    }
});

const CLUSTER = { name: "chat-synapse-db", engine: "pg", version: "17", size: "db-s-1vcpu-1gb", region: "nyc3", nodeCount: 1, tags: ["phillymesh-chat"] };
const reasons = (r: { failures?: { reason: string }[] }) => (r.failures ?? []).map((f) => f.reason);

test("DatabaseCluster: name and engine replace; version, region and size are updates in place (resource_database_cluster.go)", async () => {
    const p = dox.databaseClusterProvider;
    expect(await p.diff!("id", CLUSTER, { ...CLUSTER })).toEqual({ changes: false, replaces: [] });
    expect(await p.diff!("id", CLUSTER, { ...CLUSTER, name: "other" })).toEqual({ changes: true, replaces: ["name"] });
    expect(await p.diff!("id", CLUSTER, { ...CLUSTER, engine: "mysql" })).toEqual({ changes: true, replaces: ["engine"] });
    for (const edit of [{ version: "16" }, { region: "sfo3" }, { size: "db-s-2vcpu-4gb" }])
        expect(await p.diff!("id", CLUSTER, { ...CLUSTER, ...edit })).toEqual({ changes: true, replaces: [] });
    // region is lower-cased (StateFunc)
    expect(await p.diff!("id", CLUSTER, { ...CLUSTER, region: "NYC3" })).toEqual({ changes: false, replaces: [] });
});

test("DatabaseCluster: version required; what the stand-in cannot run is refused at preview", async () => {
    const p = dox.databaseClusterProvider;
    expect(reasons(await p.check!({}, CLUSTER))).toEqual([]);
    expect(reasons(await p.check!({}, { ...CLUSTER, version: undefined }))).toContain('The argument "version" is required, but no definition was found.');
    expect(reasons(await p.check!({}, { ...CLUSTER, version: "15" })).join()).toMatch(/PostgreSQL 15 is not in the testbed stand-in/);
    expect(reasons(await p.check!({}, { ...CLUSTER, engine: "mysql" })).join()).toMatch(/engine mysql is not in the testbed stand-in/);
    expect(reasons(await p.check!({}, { ...CLUSTER, nodeCount: 2 })).join()).toMatch(/standby nodes/);
    expect(reasons(await p.check!({}, { ...CLUSTER, size: "huge" })).join()).toMatch(/not a database size slug/);
});

test("DatabaseUser: name and cluster_id replace (resource_database_user.go)", async () => {
    const p = dox.databaseUserProvider;
    const u = { clusterId: "c1", name: "synapse" };
    expect(await p.diff!("c1/user/synapse", u, { ...u })).toEqual({ changes: false, replaces: [] });
    expect(await p.diff!("c1/user/synapse", u, { ...u, name: "other" })).toEqual({ changes: true, replaces: ["name"] });
    expect(await p.diff!("c1/user/synapse", u, { ...u, clusterId: "c2" })).toEqual({ changes: true, replaces: ["clusterId"] });
});

test("DatabaseFirewall: the provider's rule types only; the rule set is an update, the cluster a replacement (resource_database_firewall.go)", async () => {
    const p = dox.databaseFirewallProvider;
    const fw = { clusterId: "c1", rules: [{ type: "droplet", value: "500000001" }] };
    expect(reasons(await p.check!({}, fw))).toEqual([]);
    expect(reasons(await p.check!({}, { ...fw, rules: [] }))).toContain('The argument "rule" is required, but no definition was found.');
    expect(reasons(await p.check!({}, { ...fw, rules: [{ type: "vpc", value: "x" }] })).join()).toMatch(
        /to be one of \["ip_addr","droplet","k8s","tag","app"\], got vpc/,
    );
    expect(reasons(await p.check!({}, { ...fw, rules: [{ type: "tag", value: "web" }] })).join()).toMatch(/rule type tag is not in the testbed stand-in/);
    expect(reasons(await p.check!({}, { ...fw, rules: [{ type: "ip_addr", value: "" }] })).join()).toMatch(/value" to not be an empty string/);
    expect(await p.diff!("x", fw, { ...fw, rules: [{ type: "droplet", value: 500000001 }] })).toEqual({ changes: false, replaces: [] });
    expect(await p.diff!("x", fw, { ...fw, rules: [{ type: "droplet", value: "500000002" }] })).toEqual({ changes: true, replaces: [] });
    expect(await p.diff!("x", fw, { ...fw, clusterId: "c2" })).toEqual({ changes: true, replaces: ["clusterId"] });
});

test("getDatabaseCa returns the cluster's CA PEM; an unknown cluster is a 404", async () => {
    fs.mkdirSync(path.join(dir, "cloud", "db", "do-db1"), { recursive: true });
    const ca = path.join(dir, "cloud", "db", "do-db1", "ca.crt");
    fs.writeFileSync(ca, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
    fs.writeFileSync(path.join(dir, "cloud", "do-account.json"), JSON.stringify({ databases: [{ id: "c1", guest: "do-db1", caFile: ca }] }));
    const r = await dox.getDatabaseCa({ clusterId: "c1" });
    expect(r.certificate).toMatch(/^-----BEGIN CERTIFICATE-----/);
    await expect(dox.getDatabaseCa({ clusterId: "c2" })).rejects.toThrow(/databases\/c2\/ca: 404/);
});
