// The DigitalOcean stand-in's managed PostgreSQL (digitalocean/database.ts) on the machine, without
// the engine: a cluster guest booted, then from the host (10.250.0.1) over TLS verify-full to the
// cluster's host name: doadmin and a new user log in; another CA is refused; a firewall admitting the
// host admits it; one admitting only another address (the whole list replaced) refuses it; its
// delete opens the cluster again; user and cluster deleted. Under the testbed lock:
//   flock -o /var/tmp/phillymesh-testbed.lock ts-node --transpile-only testbed/deploy/databaseSelftest.ts
// (about 25 s on 2 cores with a warm template; the drill 25 covers the rest through the engine).
/* eslint-disable @typescript-eslint/no-explicit-any */
import * as cp from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { databaseClusterProvider as C, databaseFirewallProvider as F, databaseUserProvider as U, getDatabaseCa } from "./digitalocean/database";
import { readAccount } from "./digitalocean/account";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "db-selftest-"));
let failed = 0;
function expectThat(what: string, got: string, re: RegExp): void {
    const ok = re.test(got);
    if (!ok) failed++;
    process.stdout.write(`${ok ? "ok  " : "FAIL"} ${what}: ${got}\n`);
}
function psql(host: string, ip: string, user: string, pw: string, ca: string): string {
    const conn = `host=${host} hostaddr=${ip} port=25060 dbname=defaultdb user=${user} sslmode=verify-full sslrootcert=${ca} connect_timeout=10`;
    try {
        const sql = "SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";
        return cp
            .execFileSync("psql", [conn, "-XtAc", sql], { env: { ...process.env, PGPASSWORD: pw }, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] })
            .trim();
    } catch (e: any) {
        return `ERR ${String(e.stderr).trim()}`;
    }
}

(async () => {
    const repo = path.resolve(__dirname, "..", "..");
    const t0 = Date.now();
    const c: any = await C.create!({ __repo: repo, name: "selftest-db", engine: "pg", version: "17", size: "db-s-1vcpu-1gb", region: "nyc1", nodeCount: 1 });
    const ip = readAccount().databases.find((x: any) => x.id === c.id).ip;
    const host = c.outs.host;
    process.stdout.write(`cluster ${c.id} ${host} at ${ip} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    try {
        const u: any = await U.create!({ __repo: repo, clusterId: c.id, name: "synapse" });
        const ca = path.join(tmp, "ca.crt");
        fs.writeFileSync(ca, (await getDatabaseCa({ clusterId: c.id })).certificate);
        const other = path.join(tmp, "other.crt");
        cp.execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=other", "-keyout", path.join(tmp, "o.key"), "-out", other], {
            stdio: "ignore",
        });
        expectThat("no firewall: doadmin over TLS", psql(host, ip, "doadmin", c.outs.password, ca), /^doadmin\|t$/);
        expectThat("no firewall: the new user over TLS", psql(host, ip, "synapse", u.outs.password, ca), /^synapse\|t$/);
        expectThat("another CA", psql(host, ip, "doadmin", c.outs.password, other), /certificate verify failed/);
        const f: any = await F.create!({ __repo: repo, clusterId: c.id, rules: [{ type: "ip_addr", value: "10.250.0.1" }] });
        expectThat("firewall admitting the host", psql(host, ip, "synapse", u.outs.password, ca), /^synapse\|t$/);
        await F.update!(f.id, f.outs, { __repo: repo, clusterId: c.id, rules: [{ type: "ip_addr", value: "10.250.0.99" }] });
        expectThat("firewall replaced by another address", psql(host, ip, "synapse", u.outs.password, ca), /no pg_hba\.conf entry for host "10\.250\.0\.1"/);
        await F.delete!(f.id, f.outs);
        expectThat("firewall deleted", psql(host, ip, "synapse", u.outs.password, ca), /^synapse\|t$/);
        await U.delete!(u.id, u.outs);
        expectThat("user deleted", psql(host, ip, "synapse", u.outs.password, ca), /password authentication failed|role "synapse" does not exist/);
    } finally {
        await C.delete!(c.id, c.outs);
        fs.rmSync(tmp, { recursive: true, force: true });
    }
    const left = (readAccount().databases ?? []).length;
    expectThat("cluster deleted: clusters left in the account", String(left), /^0$/);
    process.stdout.write(`${failed ? "FAILED" : "all passed"} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
    process.exit(failed ? 1 : 0);
})().catch((e) => {
    process.stderr.write(`${String(e)}\n`);
    process.exit(2);
});
