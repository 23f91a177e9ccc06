// nginx in front of everything, with certificates from the ACME server: the homeserver on 443 and
// 8448, Element on 443, the apex's /.well-known/matrix files when the apex is on this server.
import * as pulumi from "@pulumi/pulumi";
import type { TlsSettings } from "./config";
import { Target } from "./host";
import { CERT_NAME, Hostnames, PORTS, SERVER_PATHS, urls } from "./layout";
import { RemoteStep } from "./remoteStep";
import { readFile, renderTemplate } from "./templates";

/** What the web server is built from. */
export interface WebSettings {
    readonly names: Hostnames;
    readonly adminEmail: string;
    readonly dataDir: string;
    readonly tls: TlsSettings;
    /** Largest upload, for client_max_body_size. */
    readonly maxUploadSizeMb: number;
}

/** The names on the certificate. The server name itself is always there: SRV delegation needs it. */
export function certificateNames(names: Hostnames): string[] {
    return [names.server, names.matrix, names.chat];
}

/** Names this server answers on port 80 (HTTP-01 and the redirect to HTTPS). */
function httpNames(names: Hostnames, apexOnServer: boolean): string[] {
    return apexOnServer ? certificateNames(names) : [names.matrix, names.chat];
}

/** What clients read at https://<domain>/.well-known/matrix/client to find the homeserver. */
export function wellKnownClient(names: Hostnames): Record<string, unknown> {
    return { "m.homeserver": { base_url: urls(names).homeserver } };
}

/** What servers read at https://<domain>/.well-known/matrix/server (same answer as the SRV record). */
export function wellKnownServer(names: Hostnames): Record<string, unknown> {
    return { "m.server": `${names.matrix}:${PORTS.federation}` };
}

/** Every nginx file the program installs, by its path under /etc/nginx. */
export function nginxFiles(web: WebSettings): Record<string, string> {
    const n = web.names;
    const layout = { https_port: PORTS.https, chat_host: n.chat };
    const files: Record<string, string> = {
        "sites-available/phillymesh-chat-acme.conf": renderTemplate("nginx/acme.conf", { server_names: httpNames(n, web.tls.apexOnServer).join(" "), http_port: PORTS.http }),
        "snippets/phillymesh-chat-tls.conf": renderTemplate("nginx/tls.conf", { certificate_dir: SERVER_PATHS.certificateDir }),
        "sites-available/phillymesh-chat-matrix.conf": renderTemplate("nginx/matrix.conf", {
            ...layout,
            server_name: n.server,
            matrix_host: n.matrix,
            federation_port: PORTS.federation,
            synapse_port: PORTS.synapse,
            max_upload_mb: web.maxUploadSizeMb,
        }),
        "sites-available/phillymesh-chat-chat.conf": renderTemplate("nginx/chat.conf", { ...layout, element_root: SERVER_PATHS.elementRoot }),
    };
    if (web.tls.apexOnServer) {
        files["sites-available/phillymesh-chat-apex.conf"] = renderTemplate("nginx/apex.conf", { ...layout, server_name: n.server });
    }
    return files;
}

export interface WebServerArgs {
    readonly target: Target;
    readonly web: WebSettings;
    /** What the TLS sites serve: they go live only after these (Synapse, Element). */
    readonly backends: pulumi.Input<pulumi.Resource>[];
}

export class WebServer extends pulumi.ComponentResource {
    public readonly ready: pulumi.Resource;

    constructor(name: string, args: WebServerArgs, opts?: pulumi.ComponentResourceOptions) {
        super("phillymesh-chat:index:WebServer", name, {}, opts);
        const { web, target } = args;
        const files = nginxFiles(web);
        const certs = new RemoteStep(
            `${name}-certificates`,
            {
                target,
                script: "certificates.sh",
                handlesSecrets: web.tls.cloudflareDnsToken !== undefined,
                env: {
                    CERT_NAME,
                    CERT_NAMES: certificateNames(web.names).join(" "),
                    ACME_SERVER: web.tls.acmeServer,
                    ACME_EMAIL: web.adminEmail,
                    CHALLENGE: web.tls.challenge,
                    NGINX_WORKERS: String(web.tls.nginxWorkerProcesses),
                    CLOUDFLARE_DNS_TOKEN: web.tls.cloudflareDnsToken ?? "",
                    DATA_DIR: web.dataDir,
                    ACME_SITE_CONF: files["sites-available/phillymesh-chat-acme.conf"],
                    EXPIRY_CHECK_SCRIPT: renderTemplate("scripts/cert-check.sh", { certificate_dir: SERVER_PATHS.certificateDir }),
                    EXPIRY_CHECK_SERVICE: readFile("systemd/cert-check.service"),
                    EXPIRY_CHECK_TIMER: readFile("systemd/cert-check.timer"),
                },
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        const sites = new RemoteStep(
            `${name}-sites`,
            {
                target,
                script: "nginx-sites.sh",
                env: {
                    TLS_SNIPPET: files["snippets/phillymesh-chat-tls.conf"],
                    MATRIX_SITE_CONF: files["sites-available/phillymesh-chat-matrix.conf"],
                    CHAT_SITE_CONF: files["sites-available/phillymesh-chat-chat.conf"],
                    APEX_SITE_CONF: files["sites-available/phillymesh-chat-apex.conf"] ?? "",
                    WELL_KNOWN_CLIENT: JSON.stringify(wellKnownClient(web.names)),
                    WELL_KNOWN_SERVER: JSON.stringify(wellKnownServer(web.names)),
                },
            },
            { parent: this, dependsOn: [certs.command, ...args.backends] },
        );
        this.ready = sites.command;
        this.registerOutputs({});
    }
}
