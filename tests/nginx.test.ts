// The nginx sites as the server receives them, checked by the real `nginx -t` with throwaway
// certificates, and answering as they should on the ports they listen on.
import { ChatConfig, mapSource, readConfig } from "../components/config";
import { nginxSyntaxCheck } from "./nginxCheck";
import { webSettings } from "../components/chatService";
import { hostnames } from "../components/layout";
import { nginxFiles, certificateNames } from "../components/webServer";
import { readFile } from "../components/templates";
import { BASE_CONFIG, SECRETS } from "./harness";

function loadTestConfig(overrides: Record<string, string> = {}, secrets: Record<string, string> = SECRETS): ChatConfig {
    return readConfig(mapSource({ ...BASE_CONFIG, ...overrides }, secrets));
}

describe("nginx accepts the rendered sites", () => {
    test.each([
        ["apex elsewhere (DNS-01)", {}],
        ["apex on this server (HTTP-01)", { dns: "none", acmeChallenge: "http", apexOnServer: "true" }],
    ])("%s", (_what, overrides) => {
        const cfg = loadTestConfig(overrides as Record<string, string>);
        const r = nginxSyntaxCheck(nginxFiles(webSettings(cfg)), cfg.domain);
        expect(r.stderr).toContain("syntax is ok");
        expect(r.status).toBe(0);
    });

    test("TLS: 1.2 and 1.3 only, no stapling, no DHE, HSTS two years", () => {
        const tls = readFile("server/nginx/tls.conf");
        expect(tls).toMatch(/^ssl_protocols TLSv1\.2 TLSv1\.3;$/m);
        expect(tls).not.toMatch(/^\s*ssl_stapling/m);
        expect(tls).not.toMatch(/[\s:]DHE-|ssl_dhparam/);
        expect(tls).toMatch(/Strict-Transport-Security "max-age=63072000"/);
    });

    test("the homeserver site proxies the client API on 443 and federation, keys and media on 8448, nothing else, with the upload limit", () => {
        const cfg = loadTestConfig({ maxUploadSizeMb: "75" });
        const site = nginxFiles(webSettings(cfg))["sites-available/phillymesh-chat-matrix.conf"];
        expect(site).toMatch(/listen 8448 ssl default_server;/);
        expect(site).toMatch(/listen 443 ssl;/);
        expect(site).toMatch(/client_max_body_size 75M;/);
        expect(site).toMatch(/location ~ \^\(\/_matrix\|\/_synapse\/client\) \{[^}]*return 404;\s*\}\s*proxy_pass http:\/\/127\.0\.0\.1:8008;/);
        expect(site).not.toMatch(/_synapse\/admin/);
        // Access tokens in query strings stay out of the access log.
        expect(site).toMatch(/^\s*access_log \S+ phillymesh_chat_no_query;$/m);
        const format = /^log_format phillymesh_chat_no_query (.*);$/m.exec(site)?.[1] ?? "";
        expect(format).toContain("$uri");
        expect(format).not.toMatch(/\$request\b|\$request_uri|\$args|\$query_string|\$http_referer/);
        // Synapse routes on the raw path, nginx matched the decoded one: the raw one decides, per port.
        expect(site).toMatch(/if \(\$phillymesh_chat_not_proxied\) \{\s*return 404;/);
        const map = /^map "\$server_port \$request_uri" \$phillymesh_chat_not_proxied \{([^}]*)\}/m.exec(site)?.[1] ?? "";
        const rules = [...map.matchAll(/^\s*"~(.*)" 0;$/gm)].map((m) => new RegExp(m[1]));
        expect(map).toMatch(/^\s*default 1;$/m);
        expect(rules).toHaveLength(2);
        const proxied = (port: number, uri: string) => rules.some((r) => r.test(`${port} ${uri}`));
        for (const uri of ["/_matrix/client/versions", "/_matrix", "/_matrix?x=1", "/_synapse/client/oidc"])
            expect([uri, proxied(443, uri)]).toEqual([uri, true]);
        for (const uri of ["/_matrix/federation/v1/version", "/_matrix/key/v2/server", "/_matrix/media/v3/download/a.b/c"]) {
            expect([uri, proxied(8448, uri)]).toEqual([uri, true]);
        }
        for (const [port, uri] of [
            [443, "/_synapse/admin/v1/server_version"],
            [443, "/_synapse/admin/v2/users/..%2F..%2F..%2F..%2F_matrix"],
            [443, "/_matrixx/client"],
            [443, "/%5Fmatrix/client/versions"],
            [8448, "/_matrix/client/versions"],
            [8448, "/_matrix/client/v3/login"],
            [8448, "/_synapse/client/oidc"],
            [8448, "/_synapse/admin/v2/users/..%2F..%2F..%2F..%2F_matrix/federation/"],
        ] as [number, string][]) {
            expect([port, uri, proxied(port, uri)]).toEqual([port, uri, false]);
        }
    });

    test("Element's site sends the headers Element asks for and never caches index.html or config.json", () => {
        const site = nginxFiles(webSettings(loadTestConfig()))["sites-available/phillymesh-chat-chat.conf"];
        for (const h of ["X-Frame-Options SAMEORIGIN", "X-Content-Type-Options nosniff", `Content-Security-Policy "frame-ancestors 'self'"`])
            expect(site).toContain(h);
        expect(site).toMatch(/location ~ \^\/\(index\\\.html\|config\.\*\\\.json\|version\)\?\$ \{\s*expires -1;/);
        // No add_header inside a location (that would silently drop the server-level headers).
        const locations = site
            .split("location")
            .slice(1)
            .map((l) => l.slice(0, l.indexOf("}")));
        for (const l of locations) expect(l).not.toContain("add_header");
    });

    test("the certificate covers the server name itself (SRV delegation), matrix and chat", () => {
        expect(certificateNames(hostnames(loadTestConfig().domain))).toEqual(["phillymesh.net", "matrix.phillymesh.net", "chat.phillymesh.net"]);
    });
});
