// nginx in front of everything, with certificates from the ACME server: the homeserver on 443 and
// 8448, Element on 443, the apex's /.well-known/matrix files when the apex is on this server.
import * as pulumi from "@pulumi/pulumi";
import { ChatConfig } from "./config";
import { RemoteStep, Target } from "./remoteStep";
import { readFile, renderTemplate } from "./templates";

/** The names on the certificate. The server name itself is always there: SRV delegation needs it. */
export function certificateNames(cfg: ChatConfig): string[] {
    return [cfg.domain, `matrix.${cfg.domain}`, `chat.${cfg.domain}`];
}

/** Names this server answers on port 80 (HTTP-01 and the redirect to HTTPS). */
export function httpNames(cfg: ChatConfig): string[] {
    return cfg.tls.apexOnServer ? certificateNames(cfg) : [`matrix.${cfg.domain}`, `chat.${cfg.domain}`];
}

/** What clients read at https://<domain>/.well-known/matrix/client to find the homeserver. */
export function wellKnownClient(cfg: ChatConfig): Record<string, unknown> {
    return { "m.homeserver": { base_url: `https://matrix.${cfg.domain}` } };
}

/** What servers read at https://<domain>/.well-known/matrix/server (same answer as the SRV record). */
export function wellKnownServer(cfg: ChatConfig): Record<string, unknown> {
    return { "m.server": `matrix.${cfg.domain}:8448` };
}

/** Every nginx file the program installs, by its path under /etc/nginx. */
export function nginxFiles(cfg: ChatConfig): Record<string, string> {
    const files: Record<string, string> = {
        "sites-available/phillymesh-chat-acme.conf": renderTemplate("nginx/acme.conf", { server_names: httpNames(cfg).join(" ") }),
        "snippets/phillymesh-chat-tls.conf": readFile("nginx/tls.conf"),
        "sites-available/phillymesh-chat-matrix.conf": renderTemplate("nginx/matrix.conf", {
            domain: cfg.domain,
            max_upload_mb: cfg.synapse.maxUploadSizeMb,
        }),
        "sites-available/phillymesh-chat-chat.conf": renderTemplate("nginx/chat.conf", { domain: cfg.domain }),
    };
    if (cfg.tls.apexOnServer) {
        files["sites-available/phillymesh-chat-apex.conf"] = renderTemplate("nginx/apex.conf", { domain: cfg.domain });
    }
    return files;
}

export interface WebServerArgs {
    /** The server, and how to reach it. */
    readonly target: Target;
    readonly config: ChatConfig;
    /** What the TLS sites serve: they go live only after these (Synapse, Element). */
    readonly backends: pulumi.Input<pulumi.Resource>[];
}

export class WebServer extends pulumi.ComponentResource {
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: WebServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:WebServer", name, {}, opts);
        const cfg = args.config;
        const files = nginxFiles(cfg);
        const certs = new RemoteStep(
            `${name}-certificates`,
            {
                target: args.target,
                script: "certificates.sh",
                handlesSecrets: cfg.tls.cloudflareDnsToken !== undefined,
                env: {
                    CERT_NAMES: certificateNames(cfg).join(" "),
                    ACME_SERVER: cfg.tls.acmeServer,
                    ACME_EMAIL: cfg.adminEmail,
                    CHALLENGE: cfg.tls.challenge,
                    NGINX_WORKERS: String(cfg.tls.nginxWorkerProcesses),
                    CLOUDFLARE_DNS_TOKEN: cfg.tls.cloudflareDnsToken ?? "",
                    DATA_DIR: cfg.dataDir,
                    ACME_SITE_CONF: files["sites-available/phillymesh-chat-acme.conf"],
                    EXPIRY_CHECK_SCRIPT: readFile("scripts/cert-check.sh"),
                    EXPIRY_CHECK_SERVICE: readFile("systemd/cert-check.service"),
                    EXPIRY_CHECK_TIMER: readFile("systemd/cert-check.timer"),
                },
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        const sites = new RemoteStep(
            `${name}-sites`,
            {
                target: args.target,
                script: "nginx-sites.sh",
                env: {
                    TLS_SNIPPET: files["snippets/phillymesh-chat-tls.conf"],
                    MATRIX_SITE_CONF: files["sites-available/phillymesh-chat-matrix.conf"],
                    CHAT_SITE_CONF: files["sites-available/phillymesh-chat-chat.conf"],
                    APEX_SITE_CONF: files["sites-available/phillymesh-chat-apex.conf"] ?? "",
                    WELL_KNOWN_CLIENT: JSON.stringify(wellKnownClient(cfg)),
                    WELL_KNOWN_SERVER: JSON.stringify(wellKnownServer(cfg)),
                },
            },
            { parent: this, dependsOn: [certs.command, ...args.backends] },
        );
        this.ready = sites.command;
        this.registerOutputs({});
    }
}
