// The whole service from a checked config: the server, DNS, the steps in order, and what the operator
// needs next. index.ts calls this with the stack's config; the tests and the testbed call it directly.
import * as pulumi from "@pulumi/pulumi";
import { ChatConfig, describeMemoryPreset, loadConfig } from "./config";
import { ChatDns, DnsRecordSpec } from "./dns";
import { existingHost, Host } from "./host";
import { HostBase } from "./hostBase";
import { hostnames, PORTS, urls } from "./layout";
import { Postgres } from "./postgres";
import { DropletServer } from "./server";
import { Monitoring } from "./monitoring";
import { Synapse, SynapseBuild } from "./synapse";
import { Element, ElementBuild } from "./element";
import { WebServer, WebSettings, wellKnownClient, wellKnownServer } from "./webServer";
import { Backups } from "./backups";
import { compressorWarning, Housekeeping } from "./housekeeping";
import { CloudFacts, preflight } from "./preflight";
import { checkService, Expected, formatVerdicts } from "./health/checks";
import { networkProbe, Probe } from "./health/probe";
import { serverStatusVerdicts, workerVerdicts } from "./health/serverStatus";
import { STATUS_FILE } from "./statusCheck";
import { Connection } from "./host";
import { workerLayout } from "./workerLayout";
import { SynapseWorkers, WorkerRedis } from "./synapseWorkers";
import { MediaBucket, MediaStorage } from "./mediaStorage";
import { MANAGED_DB_SERVICE_FILE, ManagedDatabase } from "./managedDatabase";

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
    health: pulumi.Output<string[]>;
    /** The memory preset and the values it gave the tuning keys the stack leaves unset. */
    memoryTuning: string;
}

// What each component is built from, taken from the config in one place (the tests use these too).
export const synapseBuild = (cfg: ChatConfig): SynapseBuild => ({
    names: hostnames(cfg.domain),
    adminEmail: cfg.adminEmail,
    dataDir: cfg.dataDir,
    synapse: cfg.synapse,
    // Only with spaces: with local media the build is exactly what it was.
    ...(cfg.mediaStorage.kind === "spaces" ? { media: cfg.mediaStorage } : {}),
});
export const elementBuild = (cfg: ChatConfig): ElementBuild => ({ names: hostnames(cfg.domain), element: cfg.element, guests: cfg.synapse.allowGuestAccess });
export const webSettings = (cfg: ChatConfig): WebSettings => ({
    names: hostnames(cfg.domain),
    adminEmail: cfg.adminEmail,
    dataDir: cfg.dataDir,
    tls: cfg.tls,
    maxUploadSizeMb: cfg.synapse.maxUploadSizeMb,
    workers: workerLayout(cfg.synapse.workers),
});

/** The server: a new droplet (and its id), or one the operator already has (no droplet id). */
function makeHost(name: string, cfg: ChatConfig, facts: CloudFacts): { host: Host; dropletId?: pulumi.Output<string> } {
    const h = cfg.hosting;
    if (h.kind === "existing") return { host: existingHost(h, cfg.sshPrivateKey) };
    const server = new DropletServer(name, { ...h, privateKey: cfg.sshPrivateKey, dataDir: cfg.dataDir, accountKeyFingerprint: facts.accountKeyFingerprint });
    return { host: server.host, dropletId: server.dropletId };
}

/** What the health checks expect of this stack's service. */
const healthExpected = (cfg: ChatConfig): Expected => {
    const names = hostnames(cfg.domain);
    const u = urls(names);
    return {
        serverName: names.server,
        homeserverUrl: u.homeserver,
        webClientUrl: u.webClient,
        federationTarget: { host: names.matrix, port: PORTS.federation },
        synapseVersion: cfg.synapse.version,
        wellKnownOnServer: cfg.tls.apexOnServer,
    };
};

/**
 * The service checked as its users and other servers see it, from where `pulumi up` runs, once
 * every step has finished: the `health` output. A failed check fails `up`, naming what is wrong and
 * the likely fix. A preview checks nothing (the output is unknown there). Without a probe (the unit
 * tests' default) nothing is checked.
 */
function healthOutput(
    after: pulumi.Output<unknown>[],
    expected: Expected,
    probe: Probe | undefined,
    server: { connection: pulumi.Input<Connection>; sudo: boolean },
    /** Worker mode's workers (none: nothing more is asked). */
    workers: readonly string[] = [],
): pulumi.Output<string[]> {
    if (!probe) return pulumi.output(["not checked (no probe)"]);
    if (pulumi.runtime.isDryRun()) return pulumi.output(pulumi.unknown) as pulumi.Output<string[]>;
    // The connection carries the SSH key (a secret); it is used to read the status file and never
    // put in the output, which would otherwise be secret as a whole.
    const connection = pulumi.unsecret(pulumi.output(server.connection)) as unknown as pulumi.Output<Record<string, unknown>>;
    return pulumi.all([connection, pulumi.all(after)]).apply(async ([c]) => {
        const verdicts = await checkService(probe, expected);
        // Over the steps' own connection.
        const ssh = {
            host: String(c.host),
            port: Number(c.port ?? 22),
            user: String(c.user ?? "root"),
            privateKey: String(c.privateKey ?? ""),
            sudo: server.sudo,
        };
        const unitStates = probe.unitStates?.bind(probe);
        if (unitStates && workers.length > 0) {
            // Worker mode: Redis and every worker running now (a stopped one fails `up`, naming it).
            verdicts.push(...(await workerVerdicts((units) => unitStates(ssh, units), workers)));
        }
        const readServerFile = probe.readServerFile?.bind(probe);
        if (readServerFile) {
            // The server's own daily status: shown, never failing `up`.
            verdicts.push(...(await serverStatusVerdicts((file) => readServerFile(ssh, file), STATUS_FILE)));
        }
        const lines = formatVerdicts(verdicts);
        for (const line of lines) void pulumi.log.info(`health: ${line}`);
        const failed = verdicts.filter((v) => v.level === "fail");
        if (failed.length) {
            // An error logged fails the update (the engine reports it, and `up` exits non-zero),
            // while the output still records every verdict for `pulumi stack output health`.
            void pulumi.log.error(
                `the service is up but ${failed.length} health check${failed.length === 1 ? "" : "s"} failed, as its users and other servers see it:\n` +
                    formatVerdicts(failed).join("\n") +
                    `\n(run the checks again with: npm run check -- ${expected.serverName})`,
            );
        }
        return lines;
    });
}

/** Declares the whole service from a checked config and what preflight found. */
export function buildChat(cfg: ChatConfig, facts: CloudFacts, name = "chat", probe?: Probe): ChatOutputs {
    // Logged by preview and up alike (the testbed's driver calls buildChat too), so a size change
    // says what it changes before it is applied.
    void pulumi.log.info(describeMemoryPreset(cfg.memoryPreset));
    const compressorSkipped = compressorWarning(cfg.database.kind, cfg.housekeeping);
    if (compressorSkipped) void pulumi.log.warn(compressorSkipped);
    const names = hostnames(cfg.domain);
    const u = urls(names);
    const { host, dropletId } = makeHost(name, cfg, facts);

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
    // Worker mode (synapseWorkers > 0): Redis before Synapse, the workers after it; nothing without.
    const workers = workerLayout(cfg.synapse.workers);
    const redis =
        workers.length > 0
            ? new WorkerRedis(name, { target: host, dataDir: cfg.dataDir, pipIndexUrl: cfg.synapse.pipIndexUrl }, { dependsOn: [base.ready] })
            : undefined;
    // mediaStorage spaces: the bucket exists before Synapse writes to it.
    const media = cfg.mediaStorage.kind === "spaces" ? cfg.mediaStorage : undefined;
    const bucket = media ? new MediaBucket(name, { media }) : undefined;
    // database managed: the cluster, and the local database moved into it before Synapse switches.
    // The local PostgreSQL stays (the moved database is kept there until the operator removes it).
    const managedDatabase =
        cfg.database.kind === "managed" && dropletId && cfg.hosting.kind === "digitalocean"
            ? new ManagedDatabase(name, { settings: cfg.database, region: cfg.hosting.region, dropletId, target: host }, { dependsOn: [postgres.ready] })
            : undefined;
    const synapse = new Synapse(
        name,
        { target: host, build: synapseBuild(cfg), postgresPassword: cfg.postgres.password, managedDatabase: managedDatabase?.connection },
        {
            dependsOn: [
                postgres.ready,
                ...(redis ? [redis.ready] : []),
                ...(bucket ? [bucket.bucket] : []),
                ...(managedDatabase ? [managedDatabase.ready] : []),
            ],
        },
    );
    // The media already on the server into the bucket, verified, then the trim of the local cache.
    if (media) new MediaStorage(name, { target: host, dataDir: cfg.dataDir, media }, { dependsOn: [synapse.ready] });
    const synapseWorkers =
        workers.length > 0
            ? new SynapseWorkers(name, { target: host, dataDir: cfg.dataDir, synapse: cfg.synapse, workers }, { dependsOn: [synapse.ready] })
            : undefined;
    const element = new Element(name, { target: host, build: elementBuild(cfg) }, { dependsOn: [base.ready] });
    const web = new WebServer(
        name,
        {
            target: host,
            web: webSettings(cfg),
            backends: [synapse.ready, element.ready, ...(synapseWorkers ? [synapseWorkers.ready] : [])],
        },
        { dependsOn: [base.ready, dns] },
    );
    new Backups(
        name,
        { target: host, dataDir: cfg.dataDir, backups: cfg.backups, pgServiceFile: managedDatabase ? MANAGED_DB_SERVICE_FILE : undefined },
        { dependsOn: [synapse.ready] },
    );
    // Nightly database report and state compression: after Synapse, whose tables it tunes (with the
    // database managed, the cluster's, so after the move too).
    new Housekeeping(
        name,
        {
            target: host,
            dataDir: cfg.dataDir,
            settings: cfg.housekeeping,
            pipIndexUrl: cfg.synapse.pipIndexUrl,
            database: managedDatabase ? "managed" : "local",
        },
        { dependsOn: [synapse.ready, ...(managedDatabase ? [managedDatabase.ready] : [])] },
    );
    // DigitalOcean's own monitoring, mailed to the admin: it needs a droplet (monitoring.ts).
    if (dropletId && cfg.monitoring.enabled) {
        new Monitoring(name, {
            dropletId,
            adminEmail: cfg.adminEmail,
            label: names.server,
            uptimeUrl: `${u.homeserver}/_matrix/client/versions`,
            thresholds: cfg.monitoring,
            serving: [web.ready, synapse.ready],
        });
    }
    // A resource's urn resolves once the engine has finished its step: the checks start after the
    // sites, Synapse and Element are in place.
    const health = healthOutput(
        [web.ready.urn, synapse.ready.urn, element.ready.urn, ...(synapseWorkers ? [synapseWorkers.ready.urn] : [])],
        healthExpected(cfg),
        probe,
        host,
        workers.map((w) => w.name),
    );

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
        health,
        memoryTuning: describeMemoryPreset(cfg.memoryPreset),
    };
}

/** The program: the stack's config read and checked, the clouds looked up, the service declared. */
export async function chatProgram(): Promise<ChatOutputs> {
    const cfg = loadConfig();
    // The checks see the service from this machine, through its resolver and its trusted roots.
    return buildChat(cfg, await preflight(cfg), "chat", networkProbe());
}
