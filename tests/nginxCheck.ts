// The real `nginx -t` on rendered files, as the server's nginx would read them: Debian's layout
// (conf.d/ first, then the sites), with a throwaway certificate standing in for Let's Encrypt's.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { SERVER_PATHS } from "../components/layout";
import { throwawayCert } from "./throwawayCert";

/** The nginx binary of this machine (the tests install Debian's), or undefined. */
export const NGINX = ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => fs.existsSync(p));

/** Writes `files` (paths relative to /etc/nginx) into a scratch prefix and runs `nginx -t` on them. */
export function nginxSyntaxCheck(files: Record<string, string>, domain: string): { status: number | null; stderr: string } {
    if (!NGINX) throw new Error("nginx is not installed (scripts/install-test-tools.sh installs it)");
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "nginx-t-"));
    try {
        const certDir = path.join(dir, "live");
        fs.mkdirSync(certDir);
        throwawayCert(path.join(certDir, "fullchain.pem"), path.join(certDir, "privkey.pem"), domain, 1);
        for (const sub of ["sites-available", "snippets", "conf.d"]) fs.mkdirSync(path.join(dir, sub));
        for (const [rel, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, rel), text.split(SERVER_PATHS.certificateDir).join(certDir));
        fs.writeFileSync(
            path.join(dir, "nginx.conf"),
            [
                `pid ${dir}/nginx.pid;`,
                `error_log ${dir}/error.log;`,
                "events {}",
                "http {",
                "  include /etc/nginx/mime.types;",
                "  access_log off;",
                // As Debian's nginx.conf: conf.d/ first, then the sites.
                `  include ${dir}/conf.d/*.conf;`,
                `  include ${dir}/sites-available/*.conf;`,
                "}",
            ].join("\n"),
        );
        const r = spawnSync(NGINX, ["-t", "-p", dir, "-c", path.join(dir, "nginx.conf"), "-e", path.join(dir, "error.log")], { encoding: "utf8" });
        return { status: r.status, stderr: r.stderr };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}
