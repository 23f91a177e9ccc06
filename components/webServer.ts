// nginx in front of everything, with certificates from the ACME server: the homeserver on 443 and
// 8448, Element on 443, the apex's /.well-known/matrix files when the apex is on this server.
import * as pulumi from "@pulumi/pulumi";
import type { TlsSettings } from "./config";
import { Target } from "./host";
import { CERT_NAME, Hostnames, PORTS, SERVER_PATHS, urls } from "./layout";
import { RemoteStep, ServerFile } from "./remoteStep";
import { statusCheckFiles } from "./statusCheck";
import { renderTemplate } from "./templates";
import type { SynapseWorker } from "./workerLayout";
import { ROUTE_VARIABLE, workerRouting } from "./workerRoutes";

/** What the web server is built from. */
export interface WebSettings {
    readonly names: Hostnames;
    readonly adminEmail: string;
    readonly dataDir: string;
    readonly tls: TlsSettings;
    /** Largest upload, for client_max_body_size. */
    readonly maxUploadSizeMb: number;
    /** Synapse's workers (synapseWorkers; workerLayout.ts): none for the single process. */
    readonly workers: readonly SynapseWorker[];
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
        "sites-available/phillymesh-chat-acme.conf": renderTemplate("server/nginx/acme.conf", {
            server_names: httpNames(n, web.tls.apexOnServer).join(" "),
            http_port: PORTS.http,
        }),
        "snippets/phillymesh-chat-tls.conf": renderTemplate("server/nginx/tls.conf", { certificate_dir: SERVER_PATHS.certificateDir }),
        "sites-available/phillymesh-chat-matrix.conf": renderTemplate("server/nginx/matrix.conf", {
            ...layout,
            server_name: n.server,
            matrix_host: n.matrix,
            federation_port: PORTS.federation,
            // The single process, or in worker mode the process each endpoint belongs to (workerRoutes.ts).
            synapse_upstream: web.workers.length > 0 ? ROUTE_VARIABLE : `127.0.0.1:${PORTS.synapse}`,
            max_upload_mb: web.maxUploadSizeMb,
        }),
        "sites-available/phillymesh-chat-chat.conf": renderTemplate("server/nginx/chat.conf", { ...layout, element_root: SERVER_PATHS.elementRoot }),
    };
    if (web.workers.length > 0) files["conf.d/phillymesh-chat-workers.conf"] = workerRouting(web.workers);
    if (web.tls.apexOnServer) {
        files["sites-available/phillymesh-chat-apex.conf"] = renderTemplate("server/nginx/apex.conf", { ...layout, server_name: n.server });
    }
    return files;
}

/** nginx's files as the steps install them: root's, 0644, under /etc/nginx. */
function nginxServerFiles(files: Record<string, string>, names: readonly string[]): ServerFile[] {
    return names.filter((n) => n in files).map((n) => ({ path: `/etc/nginx/${n}`, content: files[n], mode: "0644", owner: "root:root" }));
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
                    DATA_DIR: web.dataDir,
                },
                files: [
                    ...nginxServerFiles(files, ["sites-available/phillymesh-chat-acme.conf"]),
                    // The daily status check (certificate, backups, disk, Synapse): statusCheck.ts.
                    ...statusCheckFiles(web.dataDir, web.tls.diskAlertPercent),
                    // certbot's Cloudflare plugin reads the token from this file (on the data volume).
                    ...(web.tls.challenge === "dns-cloudflare" && web.tls.cloudflareDnsToken
                        ? [
                              {
                                  path: "/etc/letsencrypt/cloudflare.ini",
                                  content: web.tls.cloudflareDnsToken.apply((t) => `dns_cloudflare_api_token = ${t}`),
                                  mode: "0600",
                                  owner: "root:root",
                              } as const,
                          ]
                        : []),
                ],
            },
            { parent: this, dependsOn: opts?.dependsOn },
        );
        const sites = new RemoteStep(
            `${name}-sites`,
            {
                target,
                script: "nginx-sites.sh",
                env: {},
                files: [
                    ...nginxServerFiles(files, [
                        "snippets/phillymesh-chat-tls.conf",
                        "sites-available/phillymesh-chat-matrix.conf",
                        "sites-available/phillymesh-chat-chat.conf",
                        "sites-available/phillymesh-chat-apex.conf",
                        // Worker mode only; removed when workers are turned off (synapseWorkers.ts).
                        "conf.d/phillymesh-chat-workers.conf",
                    ]),
                    {
                        path: "/var/www/well-known/.well-known/matrix/client",
                        content: JSON.stringify(wellKnownClient(web.names)),
                        mode: "0644",
                        owner: "root:root",
                    },
                    {
                        path: "/var/www/well-known/.well-known/matrix/server",
                        content: JSON.stringify(wellKnownServer(web.names)),
                        mode: "0644",
                        owner: "root:root",
                    },
                ],
            },
            { parent: this, dependsOn: [certs.command, ...args.backends] },
        );
        this.ready = sites.command;
        this.registerOutputs({});
    }
}
