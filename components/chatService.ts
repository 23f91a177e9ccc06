// The whole service from a checked config: the server, DNS, the steps in order, and what the operator
// needs next. index.ts calls this with the stack's config; the tests and the testbed call it directly.
import * as pulumi from "@pulumi/pulumi";
import { ChatConfig, loadConfig } from "./config";
import { ChatDns, DnsRecordSpec } from "./dns";
import { existingHost, Host } from "./host";
import { HostBase } from "./hostBase";
import { hostnames, PORTS, urls } from "./layout";
import { Postgres } from "./postgres";
import { DropletServer } from "./server";
import { Synapse, SynapseBuild } from "./synapse";
import { Element, ElementBuild } from "./element";
import { WebServer, WebSettings, wellKnownClient, wellKnownServer } from "./webServer";
import { Backups } from "./backups";
import { CloudFacts, preflight } from "./preflight";

/** The stack outputs. */
export interface ChatOutputs {
    serverName: string;
    homeserverUrl: string;
    webClientUrl: string;
    serverIp: pulumi.Output<string>;
    serverIpv6: pulumi.Output<string> | string;
    dnsRecords: pulumi.Output<DnsRecordSpec[]>;
    adminUserId: string;
    adminLogin: string;
    wellKnownMatrixClient: string;
    wellKnownMatrixServer: string;
    apexWellKnownNote: string;
    sshCommand: pulumi.Output<string>;
    backups: string;
    federationTester: string;
}

// What each component is built from, taken from the config in one place (the tests use these too).
export const synapseBuild = (cfg: ChatConfig): SynapseBuild => ({
    names: hostnames(cfg.domain),
    adminEmail: cfg.adminEmail,
    dataDir: cfg.dataDir,
    synapse: cfg.synapse,
});
export const elementBuild = (cfg: ChatConfig): ElementBuild => ({ names: hostnames(cfg.domain), element: cfg.element, guests: cfg.synapse.allowGuestAccess });
export const webSettings = (cfg: ChatConfig): WebSettings => ({
    names: hostnames(cfg.domain),
    adminEmail: cfg.adminEmail,
    dataDir: cfg.dataDir,
    tls: cfg.tls,
    maxUploadSizeMb: cfg.synapse.maxUploadSizeMb,
});

/** The server: a new droplet, or one the operator already has. */
function makeHost(name: string, cfg: ChatConfig, facts: CloudFacts): Host {
    const h = cfg.hosting;
    if (h.kind === "existing") return existingHost(h, cfg.sshPrivateKey);
    return new DropletServer(name, { ...h, privateKey: cfg.sshPrivateKey, dataDir: cfg.dataDir, accountKeyFingerprint: facts.accountKeyFingerprint }).host;
}

/** Declares the whole service from a checked config and what preflight found. */
export function buildChat(cfg: ChatConfig, facts: CloudFacts, name = "chat"): ChatOutputs {
    const names = hostnames(cfg.domain);
    const u = urls(names);
    const host = makeHost(name, cfg, facts);

    // DNS, created in Cloudflare or listed for creating by hand.
    const dns = new ChatDns(name, {
        names,
        ipv4: host.ipv4,
        ipv6: host.ipv6,
        apexOnServer: cfg.tls.apexOnServer,
        caa: { issuer: cfg.tls.caaIssuer, email: cfg.adminEmail },
        cloudflareZoneId: cfg.dns.kind === "cloudflare" ? cfg.dns.zoneId : undefined,
    });

    // The provisioning steps, in order, over one SSH connection.
    const firewall = cfg.hostFirewall
        ? { sshPort: cfg.hosting.kind === "existing" ? cfg.hosting.port : PORTS.ssh, sshAllowedCidrs: cfg.sshAllowedCidrs }
        : undefined;
    const base = new HostBase(
        name,
        { target: host, dataDir: cfg.dataDir, volume: host.volume, swapSizeMb: cfg.swapSizeMb, journalMaxMb: cfg.journalMaxMb, firewall },
        { dependsOn: host.ready },
    );
    const postgres = new Postgres(name, { target: host, dataDir: cfg.dataDir, settings: cfg.postgres }, { dependsOn: [base.ready] });
    const synapse = new Synapse(name, { target: host, build: synapseBuild(cfg), postgresPassword: cfg.postgres.password }, { dependsOn: [postgres.ready] });
    const element = new Element(name, { target: host, build: elementBuild(cfg) }, { dependsOn: [base.ready] });
    new WebServer(
        name,
        {
            target: host,
            web: webSettings(cfg),
            backends: [synapse.ready, element.ready],
        },
        { dependsOn: [base.ready, dns] },
    );
    new Backups(name, { target: host, dataDir: cfg.dataDir, backups: cfg.backups }, { dependsOn: [synapse.ready] });

    return {
        serverName: names.server,
        homeserverUrl: u.homeserver,
        webClientUrl: u.webClient,
        serverIp: host.ipv4,
        serverIpv6: host.ipv6 ?? "none",
        dnsRecords: dns.records,
        adminUserId: synapse.adminUserId,
        adminLogin:
            `Open ${u.webClient} and sign in as ${synapse.adminUserId} with the password in \`pulumi config get --show-secrets adminPassword\`` +
            ` (Element may ask for the homeserver: ${u.homeserver}).`,
        wellKnownMatrixClient: JSON.stringify(wellKnownClient(names)),
        wellKnownMatrixServer: JSON.stringify(wellKnownServer(names)),
        apexWellKnownNote: cfg.tls.apexOnServer
            ? `https://${names.server}/.well-known/matrix/* is served by this server.`
            : `Serve wellKnownMatrixClient at https://${names.server}/.well-known/matrix/client from your website (with Access-Control-Allow-Origin: *) so clients find ${u.homeserver}.`,
        sshCommand: host.sshCommand,
        backups: `Daily to ${cfg.dataDir}/backups (newest ${cfg.backups.keep} kept)${cfg.backups.rsyncTarget ? ` and to ${cfg.backups.rsyncTarget}` : ""}; restore: phillymesh-chat-restore <dir> on the server`,
        federationTester: u.federationTester,
    };
}

/** The program: the stack's config read and checked, the clouds looked up, the service declared. */
export async function chatProgram(): Promise<ChatOutputs> {
    const cfg = loadConfig();
    return buildChat(cfg, await preflight(cfg));
}
