// Philly Mesh's Matrix chat service, as one Pulumi program: read the stack config once, build the
// components in order, export what the operator needs next.
import * as pulumi from "@pulumi/pulumi";
import { loadConfig } from "./components/config";
import { DropletServer } from "./components/server";
import { ChatDns } from "./components/dns";
import { Connection, Target } from "./components/remoteStep";
import { HostBase } from "./components/hostBase";
import { Postgres } from "./components/postgres";
import { Synapse } from "./components/synapse";
import { Element } from "./components/element";
import { WebServer, wellKnownClient, wellKnownServer } from "./components/webServer";
import { Backups } from "./components/backups";

const cfg = loadConfig();
const name = "chat";

// 1. The server: a new droplet, or one the operator already has.
let address: pulumi.Output<string>;
let ipv6: pulumi.Output<string> | undefined;
let dataDevice: pulumi.Input<string> | undefined;
let serverReady: pulumi.Resource[] = [];
let serverId: pulumi.Input<string> = cfg.serverId;
let port = 22;
let user = "root";
if (cfg.hosting.kind === "digitalocean") {
    const server = new DropletServer(name, cfg.hosting);
    address = server.ipv4;
    ipv6 = server.ipv6;
    dataDevice = server.dataDevice;
    serverReady = server.ready;
    serverId = server.dropletId;
} else {
    address = pulumi.output(cfg.hosting.host);
    port = cfg.hosting.port;
    user = cfg.hosting.user;
}

// 2. DNS, created in Cloudflare or listed for creating by hand.
const dns = new ChatDns(name, {
    domain: cfg.domain,
    ipv4: address,
    ipv6,
    apexOnServer: cfg.tls.apexOnServer,
    cloudflareZoneId: cfg.dns.kind === "cloudflare" ? cfg.dns.zoneId : undefined,
});

// 3. The provisioning steps, in order, over one SSH connection.
const connection: Connection = {
    host: address,
    port,
    user,
    privateKey: cfg.sshPrivateKey,
    // A new droplet takes a minute or two before sshd answers.
    dialErrorLimit: 60,
    perDialTimeout: 10,
};
const target: Target = { connection, sudo: user !== "root", serverId };
const base = new HostBase(name, { target, dataDir: cfg.dataDir, dataDevice, swapSizeMb: cfg.swapSizeMb }, { dependsOn: serverReady });
const postgres = new Postgres(name, { target, dataDir: cfg.dataDir, settings: cfg.postgres }, { dependsOn: [base.ready] });
const synapse = new Synapse(name, { target, config: cfg }, { dependsOn: [postgres.ready] });
const element = new Element(name, { target, config: cfg }, { dependsOn: [base.ready] });
new WebServer(name, { target, config: cfg, backends: [synapse.ready, element.ready] }, { dependsOn: [base.ready, dns] });
new Backups(name, { target, config: cfg }, { dependsOn: [synapse.ready] });

// 4. What the operator needs next.
export const serverName = cfg.domain;
export const homeserverUrl = `https://matrix.${cfg.domain}`;
export const webClientUrl = `https://chat.${cfg.domain}`;
export const serverIp = address;
export const serverIpv6 = ipv6 ?? "none";
export const dnsRecords = dns.records;
export const adminUserId = synapse.adminUserId;
export const adminLogin = `Open ${webClientUrl} and sign in as ${synapse.adminUserId} with the password in \`pulumi config get --show-secrets adminPassword\`` +
    ` (Element may ask for the homeserver: ${homeserverUrl}).`;
export const wellKnownMatrixClient = JSON.stringify(wellKnownClient(cfg));
export const wellKnownMatrixServer = JSON.stringify(wellKnownServer(cfg));
export const apexWellKnownNote = cfg.tls.apexOnServer
    ? `https://${cfg.domain}/.well-known/matrix/* is served by this server.`
    : `Serve wellKnownMatrixClient at https://${cfg.domain}/.well-known/matrix/client from your website (with Access-Control-Allow-Origin: *) so clients find ${homeserverUrl}.`;
export const sshCommand = pulumi.interpolate`ssh ${port === 22 ? "" : `-p ${port} `}${user}@${address}`;
export const backups = `Daily to ${cfg.dataDir}/backups (newest ${cfg.backups.keep} kept)${cfg.backups.rsyncTarget ? ` and to ${cfg.backups.rsyncTarget}` : ""}; restore: phillymesh-chat-restore <dir> on the server`;
export const federationTester = `https://federationtester.matrix.org/api/report?server_name=${cfg.domain}`;
