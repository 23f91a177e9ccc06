// The server every step runs on, however it came to exist: a new droplet (server.ts) or a machine
// the operator already has (existingHost below). Both give the same Host.
import * as pulumi from "@pulumi/pulumi";
import type * as command from "@pulumi/command";
import type { ExistingHosting } from "./config";
import { PORTS } from "./layout";

export type Connection = command.types.input.remote.ConnectionArgs;

/** What the steps need to reach the server and know which machine it is. */
export interface Target {
    /** SSH connection shared by every step. */
    readonly connection: pulumi.Input<Connection>;
    /** Prefix with `sudo -n` (the SSH user is not root). */
    readonly sudo: boolean;
    /**
     * The identity of the machine (droplet id; for an existing server, the serverId setting). Every
     * step carries it, so a replaced server gets every step again, and nothing is skipped as
     * "unchanged" on a machine that never saw it.
     */
    readonly serverId: pulumi.Input<string>;
}

/** The data volume on a droplet: its device, name and size (the base step mounts and grows it). */
export interface DataVolume {
    readonly device: pulumi.Input<string>;
    readonly sizeGb: number;
}

export interface Host extends Target {
    /** The public IPv4 address the DNS records point at. */
    readonly ipv4: pulumi.Output<string>;
    /** The IPv6 address, when the server has one the records should publish. */
    readonly ipv6?: pulumi.Output<string>;
    /** The data volume; undefined: dataDir is a plain directory on the server. */
    readonly volume?: DataVolume;
    /** The first step waits for these (volume attached, address assigned). */
    readonly ready: pulumi.Resource[];
    /** How the operator logs in. */
    readonly sshCommand: pulumi.Output<string>;
}

/** The SSH connection every step uses. A new droplet takes a minute or two before sshd answers. */
export function sshConnection(host: pulumi.Input<string>, port: number, user: string, privateKey: pulumi.Input<string>): Connection {
    return { host, port, user, privateKey, dialErrorLimit: 60, perDialTimeout: 10 };
}

export function sshCommand(user: string, address: pulumi.Input<string>, port: number = PORTS.ssh): pulumi.Output<string> {
    return pulumi.interpolate`ssh ${port === PORTS.ssh ? "" : `-p ${port} `}${user}@${address}`;
}

/** A server the operator already has. */
export function existingHost(hosting: ExistingHosting, privateKey: pulumi.Input<string>): Host {
    const ipv4 = pulumi.output(hosting.host);
    return {
        connection: sshConnection(hosting.host, hosting.port, hosting.user, privateKey),
        sudo: hosting.user !== "root",
        serverId: hosting.serverId,
        ipv4,
        ready: [],
        sshCommand: sshCommand(hosting.user, ipv4, hosting.port),
    };
}
