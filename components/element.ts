// Element Web (formerly Riot) at the exact version in stack config, verified against the pinned
// release key, with a config.json that points it at our homeserver.
import * as pulumi from "@pulumi/pulumi";
import { ChatConfig } from "./config";
import { RemoteStep, Target } from "./remoteStep";

/** Element's config.json, with today's key names (the runbook's default_hs_url/roomDirectory are gone). */
export function elementConfig(cfg: ChatConfig): Record<string, unknown> {
    return {
        // Never together with default_server_name: Element refuses to load when both are set.
        default_server_config: {
            "m.homeserver": { base_url: `https://matrix.${cfg.domain}`, server_name: cfg.domain },
        },
        brand: cfg.element.brand,
        disable_guests: !cfg.synapse.allowGuestAccess,
        disable_custom_urls: false,
        room_directory: { servers: [...cfg.element.roomDirectoryServers] },
        permalink_prefix: `https://chat.${cfg.domain}`,
        show_labs_settings: false,
        default_theme: "light",
    };
}

/** The tarball URL for this version (the config's {version} placeholders filled in). */
export function elementDownloadUrl(cfg: ChatConfig): string {
    return cfg.element.downloadUrl.split("{version}").join(cfg.element.version);
}

export interface ElementArgs {
    /** The server, and how to reach it. */
    readonly target: Target;
    readonly config: ChatConfig;
}

export class Element extends pulumi.ComponentResource {
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: ElementArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:Element", name, {}, opts);
        const cfg = args.config;
        const step = new RemoteStep(
            `${name}-element`,
            {
                target: args.target,
                script: "element.sh",
                env: {
                    ELEMENT_VERSION: cfg.element.version,
                    ELEMENT_URL: elementDownloadUrl(cfg),
                    ELEMENT_KEY_URL: cfg.element.signingKeyUrl,
                    ELEMENT_KEY_FINGERPRINT: cfg.element.signingKeyFingerprint,
                    ELEMENT_CONFIG_JSON: JSON.stringify(elementConfig(cfg), null, 2),
                },
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        this.ready = step.command;
        this.registerOutputs({});
    }
}
