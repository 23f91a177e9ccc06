// A stand-in for `@pulumi/digitalocean`, used ONLY by the testbed (testbed/deploy/deploy.ts and
// testbed/deploy/cloudSelftest.ts). Like commandShim.ts it replaces `require("@pulumi/digitalocean")`
// in the module cache with Pulumi *dynamic* resources, run by the real engine through the
// pulumi-resource-pulumi-nodejs provider; the program is unchanged. "The account" is a JSON file,
// $B/cloud/do-account.json ($B = $TESTBED_DIR, default /var/tmp/phillymesh-testbed); what happens on
// the machine (guests, loop devices, addresses, nftables) is done by testbed/cloud/do-host.sh.
//
// What it mirrors: terraform-provider-digitalocean (github.com/digitalocean/terraform-provider-digitalocean,
// the provider @pulumi/digitalocean 4.x bridges) and the API behaviour its code relies on, each
// resource in its own module, with the provider's source cited there:
//   sshKey.ts      SshKey, getSshKeys         volume.ts      Volume
//   droplet.ts     Droplet                    attachment.ts  VolumeAttachment
//   reservedIp.ts  ReservedIp, ReservedIpAssignment
//   firewall.ts    Firewall (nftables on the host)
//   monitoring.ts  MonitorAlert, UptimeCheck, UptimeAlert (records in the account: nothing is measured or sent)
//   database.ts    DatabaseCluster, DatabaseUser, DatabaseFirewall, getDatabaseCa (PostgreSQL in a guest of its own)
//   spaces.ts      SpacesBucket: a real bucket on the testbed's S3 server (testbed/cloud/spaces.sh), with
//                  the keys of the Provider it is given (Provider: only its Spaces keys, below)
//   account.ts     the account file and its lock, the catalogue, the address pools, do-host.sh
//   terraform.ts   the plan's diff and ids, as terraform-plugin-sdk makes them
// This module holds the classes the program constructs (they run in the program's process, not in
// the provider's) and the swap of the package in the module cache.
//
// What it does NOT cover: metrics, probes and alert mail (monitoring.ts only keeps and checks the
// declarations), refresh/import (no read), tags as firewall/rule targets, source/destination
// droplet ids, load balancers and kubernetes in rules, user_data (refused: no cloud-init in the
// testbed), backups, snapshots, VPCs, private networking, droplet resize's disk and power cycle,
// the API's "pending event" races, volume limits and regions' availability. The reserved IP is an
// address of the guest's interface (on DigitalOcean it is routed to the droplet's anchor IP and is
// not on eth0). debian-12-x64 and debian-13-x64 both boot the testbed's trixie template (the slug is
// recorded, so a change is still a replacement). API error texts are those cited in the modules; the others
// ("invalid region", "invalid size", region mismatch, droplet not found) are in the same form but
// their wording is ours. A volume attached elsewhere fails with 422 and the wording "This volume is
// already attached to another Droplet"; only the "This volume is already attached" part is cited.
// Visible differences: types are pulumi-nodejs:dynamic/digitalocean:<Name>; every resource has an
// extra input `__repo` (the repository, for testbed/cloud/do-host.sh; never diffed).
import * as pulumi from "@pulumi/pulumi";
import { installModule, strictModule } from "../shimKit";
import { volumeAttachmentProvider } from "./attachment";
import { dropletProvider } from "./droplet";
import { firewallFailures, firewallProvider, portRange, renderFirewall } from "./firewall";
import { reservedIpAssignmentProvider, reservedIpProvider } from "./reservedIp";
import { getSshKeys, GetSshKeysArgs, GetSshKeysResult, parsePublicKey, sshKeyProvider } from "./sshKey";
import { freeAddress } from "./account";
import { monitorAlertFailures, monitorAlertProvider, uptimeAlertFailures, uptimeAlertProvider, uptimeCheckFailures, uptimeCheckProvider } from "./monitoring";
import { spacesBucketProvider, SPACES_REGIONS } from "./spaces";
import { volumeProvider } from "./volume";
import { databaseClusterProvider, databaseFirewallProvider, databaseUserProvider, getDatabaseCa, GetDatabaseCaArgs, GetDatabaseCaResult } from "./database";

export { getSshKeys, getDatabaseCa };
export type { GetSshKeysArgs, GetSshKeysResult, GetDatabaseCaArgs, GetDatabaseCaResult };

// ---------------------------------------------------------------------------------------------
// The classes the program constructs.

/** The repository, set by installDigitalOceanShim (every resource carries it as `__repo`). */
let repoRoot = "";

type Args = Record<string, unknown>;

/** Declares `names` as outputs (a dynamic resource's outputs must appear among its inputs). */
function withOutputs(args: Args, names: string[]): Args {
    const a: Args = { __repo: repoRoot, ...args };
    for (const n of names) if (!(n in a)) a[n] = undefined;
    return a;
}

export class SshKey extends pulumi.dynamic.Resource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly publicKey: pulumi.Output<string>;
    declare public readonly fingerprint: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(sshKeyProvider, name, withOutputs(args, ["name", "publicKey", "fingerprint"]), opts, "digitalocean", "SshKey");
    }
}

export class Volume extends pulumi.dynamic.Resource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly region: pulumi.Output<string>;
    declare public readonly size: pulumi.Output<number>;
    declare public readonly volumeUrn: pulumi.Output<string>;
    declare public readonly dropletIds: pulumi.Output<number[]>;
    declare public readonly filesystemType: pulumi.Output<string>;
    declare public readonly filesystemLabel: pulumi.Output<string>;
    declare public readonly description: pulumi.Output<string | undefined>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(
            volumeProvider,
            name,
            withOutputs(args, ["name", "region", "size", "volumeUrn", "dropletIds", "filesystemType", "filesystemLabel", "description"]),
            opts,
            "digitalocean",
            "Volume",
        );
    }
}

export class Droplet extends pulumi.dynamic.Resource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly image: pulumi.Output<string>;
    declare public readonly region: pulumi.Output<string>;
    declare public readonly size: pulumi.Output<string>;
    declare public readonly dropletUrn: pulumi.Output<string>;
    declare public readonly ipv4Address: pulumi.Output<string>;
    declare public readonly ipv4AddressPrivate: pulumi.Output<string>;
    declare public readonly ipv6Address: pulumi.Output<string>;
    declare public readonly status: pulumi.Output<string>;
    declare public readonly memory: pulumi.Output<number>;
    declare public readonly vcpus: pulumi.Output<number>;
    declare public readonly disk: pulumi.Output<number>;
    declare public readonly volumeIds: pulumi.Output<string[]>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        const outs = [
            "name",
            "image",
            "region",
            "size",
            "dropletUrn",
            "ipv4Address",
            "ipv4AddressPrivate",
            "ipv6Address",
            "status",
            "memory",
            "vcpus",
            "disk",
            "volumeIds",
            "createdAt",
            "locked",
        ];
        super(dropletProvider, name, withOutputs(args, outs), opts, "digitalocean", "Droplet");
    }
}

export class VolumeAttachment extends pulumi.dynamic.Resource {
    declare public readonly dropletId: pulumi.Output<number>;
    declare public readonly volumeId: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(volumeAttachmentProvider, name, withOutputs(args, ["dropletId", "volumeId"]), opts, "digitalocean", "VolumeAttachment");
    }
}

export class ReservedIp extends pulumi.dynamic.Resource {
    declare public readonly ipAddress: pulumi.Output<string>;
    declare public readonly region: pulumi.Output<string>;
    declare public readonly reservedIpUrn: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(reservedIpProvider, name, withOutputs(args, ["ipAddress", "region", "reservedIpUrn"]), opts, "digitalocean", "ReservedIp");
    }
}

export class ReservedIpAssignment extends pulumi.dynamic.Resource {
    declare public readonly ipAddress: pulumi.Output<string>;
    declare public readonly dropletId: pulumi.Output<number>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(reservedIpAssignmentProvider, name, withOutputs(args, ["ipAddress", "dropletId"]), opts, "digitalocean", "ReservedIpAssignment");
    }
}

export class Firewall extends pulumi.dynamic.Resource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly dropletIds: pulumi.Output<number[]>;
    declare public readonly status: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(
            firewallProvider,
            name,
            withOutputs(args, ["name", "dropletIds", "inboundRules", "outboundRules", "status", "createdAt", "pendingChanges"]),
            opts,
            "digitalocean",
            "Firewall",
        );
    }
}

export class MonitorAlert extends pulumi.dynamic.Resource {
    declare public readonly uuid: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        const outs = ["type", "compare", "value", "window", "description", "enabled", "entities", "alerts", "tags", "uuid"];
        super(monitorAlertProvider, name, withOutputs(args, outs), opts, "digitalocean", "MonitorAlert");
    }
}

export class UptimeCheck extends pulumi.dynamic.Resource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly target: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(uptimeCheckProvider, name, withOutputs(args, ["name", "target", "type", "regions", "enabled"]), opts, "digitalocean", "UptimeCheck");
    }
}

export class UptimeAlert extends pulumi.dynamic.Resource {
    declare public readonly checkId: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        const outs = ["checkId", "name", "type", "threshold", "comparison", "period", "notifications"];
        super(uptimeAlertProvider, name, withOutputs(args, outs), opts, "digitalocean", "UptimeAlert");
    }
}

export class DatabaseCluster extends pulumi.dynamic.Resource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly host: pulumi.Output<string>;
    declare public readonly privateHost: pulumi.Output<string>;
    declare public readonly port: pulumi.Output<number>;
    declare public readonly user: pulumi.Output<string>;
    declare public readonly password: pulumi.Output<string>;
    declare public readonly database: pulumi.Output<string>;
    declare public readonly uri: pulumi.Output<string>;
    declare public readonly privateUri: pulumi.Output<string>;
    declare public readonly clusterUrn: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        const outs = [
            "name",
            "engine",
            "version",
            "size",
            "region",
            "nodeCount",
            "host",
            "privateHost",
            "port",
            "user",
            "password",
            "database",
            "uri",
            "privateUri",
            "clusterUrn",
        ];
        // password, uri and private_uri are Sensitive in the provider: secret outputs in @pulumi/digitalocean.
        const secret = ["password", "uri", "privateUri"];
        super(
            databaseClusterProvider,
            name,
            withOutputs(args, outs),
            { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), ...secret] },
            "digitalocean",
            "DatabaseCluster",
        );
    }
}

/**
 * A DigitalOcean provider of the program's own (MediaBucket's, carrying the Spaces keys). Not a
 * resource here: the real one is `pulumi:providers:digitalocean`, a plugin this machine does not
 * have. It only holds what the stand-in's resources need from it: spacesAccessId and spacesSecretKey,
 * which SpacesBucket takes from its `provider` option. Anything else set on it is refused.
 */
export class Provider {
    public readonly spacesAccessId: pulumi.Output<string | undefined>;
    public readonly spacesSecretKey: pulumi.Output<string | undefined>;
    constructor(name: string, args: Args = {}) {
        const other = Object.keys(args).filter((k) => args[k] !== undefined && k !== "spacesAccessId" && k !== "spacesSecretKey");
        if (other.length > 0)
            throw new Error(`digitalocean.Provider ${name}: ${other.join(", ")} not in the testbed stand-in (only spacesAccessId, spacesSecretKey)`);
        this.spacesAccessId = pulumi.output(args.spacesAccessId as pulumi.Input<string | undefined>);
        this.spacesSecretKey = pulumi.output(args.spacesSecretKey as pulumi.Input<string | undefined>);
    }
}

export class SpacesBucket extends pulumi.dynamic.Resource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly region: pulumi.Output<string>;
    declare public readonly acl: pulumi.Output<string>;
    declare public readonly urn: pulumi.Output<string>;
    declare public readonly bucketDomainName: pulumi.Output<string>;
    declare public readonly endpoint: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        const { provider, ...rest } = opts ?? {};
        if (provider !== undefined && !(provider instanceof Provider))
            throw new Error(`digitalocean.SpacesBucket ${name}: its provider must be the stand-in's digitalocean.Provider`);
        // The keys (the provider's configuration in a real deploy) ride along as one secret input,
        // kept secret in the state as an output too.
        const keys = provider
            ? pulumi.secret(pulumi.all([provider.spacesAccessId, provider.spacesSecretKey]).apply(([accessId, secretKey]) => ({ accessId, secretKey })))
            : undefined;
        super(
            spacesBucketProvider,
            name,
            withOutputs({ ...args, __keys: keys }, ["name", "region", "acl", "forceDestroy", "urn", "bucketDomainName", "endpoint"]),
            { ...rest, additionalSecretOutputs: [...(rest.additionalSecretOutputs ?? []), "__keys"] },
            "digitalocean",
            "SpacesBucket",
        );
    }
}

export class DatabaseUser extends pulumi.dynamic.Resource {
    declare public readonly name: pulumi.Output<string>;
    declare public readonly clusterId: pulumi.Output<string>;
    declare public readonly password: pulumi.Output<string>;
    declare public readonly role: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(
            databaseUserProvider,
            name,
            withOutputs(args, ["name", "clusterId", "password", "role"]),
            { ...opts, additionalSecretOutputs: [...(opts?.additionalSecretOutputs ?? []), "password"] },
            "digitalocean",
            "DatabaseUser",
        );
    }
}

export class DatabaseFirewall extends pulumi.dynamic.Resource {
    declare public readonly clusterId: pulumi.Output<string>;
    constructor(name: string, args: Args, opts?: pulumi.CustomResourceOptions) {
        super(databaseFirewallProvider, name, withOutputs(args, ["clusterId", "rules"]), opts, "digitalocean", "DatabaseFirewall");
    }
}

/** getDatabaseCaOutput: unknown until the cluster's id is (at a preview that creates it). */
export function getDatabaseCaOutput(args: { clusterId: pulumi.Input<string> }): pulumi.Output<GetDatabaseCaResult> {
    return pulumi.output(args.clusterId).apply((clusterId) => getDatabaseCa({ clusterId }));
}

export function getSshKeysOutput(args?: GetSshKeysArgs): pulumi.Output<GetSshKeysResult> {
    return pulumi.output(getSshKeys(args));
}

/** The exports of the stand-in: anything else is an error naming this file. */
const exportsOfStandIn: Record<string, unknown> = {
    SshKey,
    Volume,
    Droplet,
    VolumeAttachment,
    ReservedIp,
    ReservedIpAssignment,
    Firewall,
    MonitorAlert,
    UptimeCheck,
    UptimeAlert,
    Provider,
    SpacesBucket,
    getSshKeys,
    getSshKeysOutput,
    DatabaseCluster,
    DatabaseUser,
    DatabaseFirewall,
    getDatabaseCa,
    getDatabaseCaOutput,
    types: { input: {}, output: {}, enums: {} },
};

/** A module object whose unknown members throw instead of being undefined. */
export const digitaloceanModule = strictModule("@pulumi/digitalocean", "testbed/deploy/digitalocean/index.ts", exportsOfStandIn);

/**
 * Makes `require("@pulumi/digitalocean")`, resolved from `repo`, return the stand-in. `repo` is also
 * where testbed/cloud/do-host.sh is found (recorded in every resource as `__repo`).
 */
export function installDigitalOceanShim(repo: string): string {
    repoRoot = repo;
    return installModule("@pulumi/digitalocean", repo, digitaloceanModule);
}

/** For tests: the providers and pure helpers. */
export {
    sshKeyProvider,
    volumeProvider,
    dropletProvider,
    volumeAttachmentProvider,
    reservedIpProvider,
    reservedIpAssignmentProvider,
    firewallProvider,
    monitorAlertProvider,
    uptimeCheckProvider,
    uptimeAlertProvider,
    databaseClusterProvider,
    databaseUserProvider,
    databaseFirewallProvider,
    spacesBucketProvider,
    SPACES_REGIONS,
    monitorAlertFailures,
    uptimeCheckFailures,
    uptimeAlertFailures,
    parsePublicKey,
    renderFirewall,
    firewallFailures,
    portRange,
    freeAddress,
    strictModule,
};
