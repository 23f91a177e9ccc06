// Element Web (formerly Riot) at the exact version in stack config, verified against the pinned
// release key, with a config.json that points it at our homeserver.
import * as pulumi from "@pulumi/pulumi";
import type { ElementSettings } from "./config";
import { Target } from "./host";
import { Hostnames, SERVER_PATHS, urls } from "./layout";
import { RemoteStep } from "./remoteStep";

/** What Element is built from. */
export interface ElementBuild {
    readonly names: Hostnames;
    readonly element: ElementSettings;
    /** Offer guest access (the homeserver's allowGuestAccess). */
    readonly guests: boolean;
}

/** Element's config.json, with today's key names (the runbook's default_hs_url/roomDirectory are gone). */
export function elementConfig(b: ElementBuild): Record<string, unknown> {
    const u = urls(b.names);
    return {
        // Never together with default_server_name: Element refuses to load when both are set.
        default_server_config: {
            "m.homeserver": { base_url: u.homeserver, server_name: b.names.server },
        },
        brand: b.element.brand,
        disable_guests: !b.guests,
        disable_custom_urls: false,
        room_directory: { servers: [...b.element.roomDirectoryServers] },
        permalink_prefix: u.webClient,
        show_labs_settings: false,
        default_theme: "light",
    };
}

/** The tarball URL for this version (the config's {version} placeholders filled in). */
export function elementDownloadUrl(e: Pick<ElementSettings, "downloadUrl" | "version">): string {
    return e.downloadUrl.split("{version}").join(e.version);
}

export interface ElementArgs {
    readonly target: Target;
    readonly build: ElementBuild;
}

export class Element extends pulumi.ComponentResource {
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: ElementArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:Element", name, {}, opts);
        const e = args.build.element;
        const step = new RemoteStep(
            `${name}-element`,
            {
                target: args.target,
                script: "element.sh",
                env: {
                    ELEMENT_VERSION: e.version,
                    ELEMENT_URL: elementDownloadUrl(e),
                    ELEMENT_KEY_URL: e.signingKeyUrl,
                    ELEMENT_KEY_FINGERPRINT: e.signingKeyFingerprint,
                    ELEMENT_ROOT: SERVER_PATHS.elementRoot,
                },
                // Inside the release directory, so a new release switches live with its config.
                files: [
                    {
                        path: `${SERVER_PATHS.elementRoot}/releases/${e.version}/config.json`,
                        content: JSON.stringify(elementConfig(args.build), null, 2),
                        mode: "0644",
                        owner: "root:root",
                    },
                ],
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.ready = step.command;
        this.registerOutputs({});
    }
}
