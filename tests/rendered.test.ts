// What the server receives, checked by the real tools: every script (as sent, variables and library
// included) by shellcheck, and the Synapse and Element configuration parsed and checked for the
// settings that matter. The nginx sites are in nginx.test.ts.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as yaml from "js-yaml";
import { ChatConfig, mapSource, readConfig } from "../components/config";
import { elementBuild, synapseBuild } from "../components/chatService";
import { homeserverConfig, logConfig, synapseUnit, toYaml, URL_PREVIEW_IP_RANGE_BLOCKLIST } from "../components/synapse";
import { elementConfig, elementDownloadUrl } from "../components/element";
import { readFile, renderTemplate, stepScript, shellQuote } from "../components/templates";
import { runnerCommand } from "../components/remoteStep";
import { BASE_CONFIG, SECRETS } from "./harness";

function loadTestConfig(overrides: Record<string, string> = {}, secrets: Record<string, string> = SECRETS): ChatConfig {
    return readConfig(mapSource({ ...BASE_CONFIG, ...overrides }, secrets));
}

const shellFiles = (dir: string) => fs.readdirSync(path.join(__dirname, "..", "files", dir)).filter((f) => f.endsWith(".sh"));
const STEPS = shellFiles("steps");
const SHELL_FILES = [
    ...STEPS.map((f) => `steps/${f}`),
    ...shellFiles("lib").map((f) => `lib/${f}`),
    ...shellFiles("server/sbin").map((f) => `server/sbin/${f}`),
];

describe("scripts pass shellcheck", () => {
    test("files/ holds the step scripts, the shell libraries and what the server gets, each in its place", () => {
        expect(fs.readdirSync(path.join(__dirname, "..", "files")).sort()).toEqual(["lib", "server", "steps"]);
        expect(STEPS).toEqual(
            expect.arrayContaining([
                "base.sh",
                "postgres.sh",
                "synapse.sh",
                "admin.sh",
                "element.sh",
                "certificates.sh",
                "nginx-sites.sh",
                "backups.sh",
                "release-volume.sh",
            ]),
        );
        expect(shellFiles("lib").sort()).toEqual(["adopt.sh", "disk-reserve.sh", "lib.sh", "venv.sh", "workers.sh"]);
    });

    test.each(SHELL_FILES)("files/%s", (script) => {
        const r = spawnSync("shellcheck", ["-x", "--severity=style", path.join("files", script)], { cwd: path.join(__dirname, ".."), encoding: "utf8" });
        expect(r.error).toBeUndefined();
        expect(r.stdout + r.stderr).toBe("");
        expect(r.status).toBe(0);
    });

    test.each(STEPS)("%s as sent to the server, with hostile values and files", (script) => {
        const hostile = `it's "quoted" $(reboot) \`id\` ; rm -rf / \n second line`;
        const files = [{ path: "/etc/phillymesh-chat/odd", content: hostile, mode: "0600", owner: "root:root" } as const];
        const text = stepScript(script, { STEP_NAME: "t", DOMAIN: "phillymesh.net", ODD_VALUE: hostile }, [], files);
        const r = spawnSync("shellcheck", ["--shell=bash", "--severity=warning", "-"], { input: text, encoding: "utf8" });
        expect(r.stdout + r.stderr).toBe("");
        // bash reads the hostile value and file back unchanged, running nothing.
        const header = text.slice(0, text.indexOf(readFile("lib/lib.sh")));
        const array = spawnSync("bash", ["-c", `${header}\nprintf '%s|' "\${INSTALL_FILES[@]}"`], { encoding: "utf8" });
        expect(array.stdout).toBe(`/etc/phillymesh-chat/odd|0600|root:root|${hostile}|`);
        const echo = spawnSync("bash", ["-c", `${header}\nprintf %s "$ODD_VALUE"`], {
            encoding: "utf8",
        });
        expect(echo.stdout).toBe(hostile);
    });

    test("the runner reads the whole script before running it, and passes on its exit code", () => {
        const cmd = runnerCommand(false);
        const ok = spawnSync("bash", ["-c", cmd], { input: "read -r x || true\necho after-read\n", encoding: "utf8" });
        // `read` gets EOF (stdin is /dev/null for the script), so the rest of the script still runs.
        expect(ok.stdout).toBe("after-read\n");
        const bad = spawnSync("bash", ["-c", cmd], { input: "exit 7\n", encoding: "utf8" });
        expect(bad.status).toBe(7);
        expect(shellQuote("a'b")).toBe(`'a'\\''b'`);
    });
});

describe("homeserver.yaml", () => {
    const cfg = loadTestConfig({ federationIpAllowlist: '["10.250.0.0/24"]', cacheFactor: "0.25", maxUploadSizeMb: "40" });
    const rendered = toYaml(homeserverConfig(synapseBuild(cfg)));
    const hs = yaml.load(rendered) as Record<string, any>;

    test("parses, and names the server, its URL and the PostgreSQL database", () => {
        expect(hs.server_name).toBe("phillymesh.net");
        expect(hs.public_baseurl).toBe("https://matrix.phillymesh.net/");
        expect(hs.database.name).toBe("psycopg2");
        expect(hs.database.args).toMatchObject({ user: "synapse", dbname: "synapse", host: "127.0.0.1", cp_max: 3 });
        expect(hs.listeners).toEqual([
            {
                port: 8008,
                tls: false,
                type: "http",
                x_forwarded: true,
                bind_addresses: ["127.0.0.1"],
                resources: [{ names: ["client", "federation"], compress: false }],
            },
        ]);
    });

    test("holds no secret: every secret is a *_path file on the data volume", () => {
        for (const secret of Object.values(SECRETS)) expect(rendered).not.toContain(secret);
        for (const key of ["registration_shared_secret", "macaroon_secret_key", "form_secret"]) {
            expect(hs[key]).toBeUndefined();
            expect(hs[`${key}_path`]).toBe(`/mnt/matrix_data/synapse/secrets/${key}`);
        }
        expect(hs.signing_key_path).toBe("/mnt/matrix_data/synapse/keys/signing.key");
        expect(hs.media_store_path).toBe("/mnt/matrix_data/synapse/media");
        expect(hs.database.args.password).toBeUndefined();
    });

    test("profiles for room-mates only; remote media, forgotten rooms and big remote rooms bounded; each bound can be turned off", () => {
        expect(hs.require_auth_for_profile_requests).toBe(true);
        expect(hs.limit_profile_requests_to_users_who_share_rooms).toBe(true);
        expect(hs.session_lifetime).toBeUndefined();
        expect(hs.media_retention).toEqual({ remote_media_lifetime: "90d" });
        expect(hs.forgotten_room_retention_period).toBe("28d");
        expect(hs.limit_remote_rooms).toMatchObject({
            enabled: true,
            complexity: 1,
            admins_can_join: true,
            complexity_error: expect.stringMatching(/too large/),
        });
        const off = homeserverConfig(
            synapseBuild(loadTestConfig({ remoteMediaRetention: "", forgottenRoomRetention: "", remoteRoomComplexityLimit: "0", sessionLifetime: "12w" })),
        );
        expect([off.media_retention, off.forgotten_room_retention_period, off.limit_remote_rooms, off.session_lifetime]).toEqual([
            undefined,
            undefined,
            undefined,
            "12w",
        ]);
    });

    test("registration by token, guests, previews with the full blocklist, caches, presence, upload size", () => {
        expect(hs.enable_registration).toBe(true);
        expect(hs.registration_requires_token).toBe(true);
        expect(hs.enable_registration_without_verification).toBeUndefined();
        // Guests get an account before any registration token is asked for: off unless asked for.
        expect(hs.allow_guest_access).toBe(false);
        expect(homeserverConfig(synapseBuild(loadTestConfig({ allowGuestAccess: "true" }))).allow_guest_access).toBe(true);
        expect(hs.url_preview_enabled).toBe(true);
        expect(hs.url_preview_ip_range_blacklist).toEqual([...URL_PREVIEW_IP_RANGE_BLOCKLIST]);
        for (const r of ["100.64.0.0/10", "169.254.0.0/16", "fc00::/7", "::1/128", "224.0.0.0/4"]) expect(hs.url_preview_ip_range_blacklist).toContain(r);
        expect(hs.ip_range_whitelist).toEqual(["10.250.0.0/24"]);
        expect(hs.caches).toEqual({
            global_factor: 0.25,
            cache_autotuning: { max_cache_memory_usage: "128M", target_cache_memory_usage: "96M", min_cache_ttl: "30s" },
        });
        expect(hs.presence).toEqual({ enabled: false });
        expect(hs.max_upload_size).toBe("40M");
        expect(hs.report_stats).toBe(false);
    });

    test("cache autotuning follows synapseCacheMemoryMb, and only with jemalloc (it reads jemalloc's statistics)", () => {
        expect((homeserverConfig(synapseBuild(loadTestConfig({ synapseCacheMemoryMb: "200" }))).caches as any).cache_autotuning.target_cache_memory_usage).toBe(
            "150M",
        );
        expect(homeserverConfig(synapseBuild(loadTestConfig({ synapseCacheMemoryMb: "0" }))).caches).toEqual({ global_factor: 0.1 });
        expect(homeserverConfig(synapseBuild(loadTestConfig({ synapseJemalloc: "false" }))).caches).toEqual({ global_factor: 0.1 });
    });

    test("closed registration turns registration off", () => {
        const closed = homeserverConfig(synapseBuild(loadTestConfig({ registration: "closed" })));
        expect(closed.enable_registration).toBe(false);
        expect(closed.registration_requires_token).toBe(false);
    });

    test("logs rotate nightly keeping logBackupCount files", () => {
        const log = yaml.load(toYaml(logConfig(loadTestConfig({ logBackupCount: "3" }).synapse))) as any;
        expect(log.handlers.file).toMatchObject({ class: "logging.handlers.TimedRotatingFileHandler", backupCount: 3, when: "midnight" });
    });
});

describe("Element's config.json", () => {
    const cfg = loadTestConfig();
    const json = JSON.parse(JSON.stringify(elementConfig(elementBuild(cfg))));

    test("points at our homeserver with today's key names and the runbook's room directory", () => {
        expect(json.default_server_config).toEqual({ "m.homeserver": { base_url: "https://matrix.phillymesh.net", server_name: "phillymesh.net" } });
        expect(json.default_server_name).toBeUndefined();
        expect(json.default_hs_url).toBeUndefined();
        expect(json.room_directory).toEqual({ servers: ["phillymesh.net", "nycmesh.net", "matrix.org"] });
        // Element offers guest access exactly when the homeserver allows guests (off by default).
        expect(json.disable_guests).toBe(true);
        expect(elementConfig(elementBuild(loadTestConfig({ allowGuestAccess: "true" }))).disable_guests).toBe(false);
        expect(json.brand).toBe("Element");
    });

    test("downloads the configured version from the configured URL", () => {
        expect(elementDownloadUrl(cfg.element)).toBe("https://github.com/element-hq/element-web/releases/download/v1.12.5/element-v1.12.5.tar.gz");
    });
});

describe("templates", () => {
    test("the systemd unit preloads jemalloc and runs the current virtualenv", () => {
        const cfg = loadTestConfig();
        const unit = synapseUnit(cfg.dataDir, cfg.synapse);
        expect(unit).toContain("Environment=LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2");
        expect(unit).toMatch(/^Environment=MALLOC_CONF=background_thread:true,.*narenas:2$/m);
        expect(unit).toContain("ExecStart=/opt/synapse/current/bin/python -m synapse.app.homeserver");
        expect(unit).toContain("RequiresMountsFor=/mnt/matrix_data");
        expect(synapseUnit(cfg.dataDir, loadTestConfig({ synapseJemalloc: "false" }).synapse)).not.toMatch(/LD_PRELOAD|MALLOC_CONF/);
    });

    test("a missing or unused template value is an error, not an empty string", () => {
        expect(() => renderTemplate("server/nginx/chat.conf", {})).toThrow(/no value for \{\{https_port\}\}/);
        expect(() =>
            renderTemplate("server/nginx/chat.conf", { https_port: 443, chat_host: "chat.x.org", element_root: "/var/www/element", extra: "1" }),
        ).toThrow(/never used: extra/);
    });
});

describe("the Synapse pip install (synapse.sh and lib/venv.sh)", () => {
    const script = readFile("steps/synapse.sh");
    const lib = readFile("lib/venv.sh");
    const fn = (name: string) => {
        const m = new RegExp(`^${name}\\(\\) \\{\\n[\\s\\S]*?\\n\\}$`, "m").exec(lib);
        if (!m) throw new Error(`venv.sh has no ${name}()`);
        return m[0];
    };

    test("wheels only, from the index alone, with no plain-HTTP branch and no compiler installed", () => {
        const pip = /"\$venv\/bin\/pip" install [^\n]*\\\n[^\n]*/.exec(lib)?.[0] ?? "";
        expect(pip).toContain("--only-binary :all:");
        expect(pip).toContain("--isolated");
        expect(pip).toContain('--index-url "$index"');
        expect(lib).toContain('as_builder "$venv/bin/pip" install');
        expect(script).toContain('build_synapse_venv "$VENV" "$SYNAPSE_VERSION" "$PIP_INDEX_URL"');
        for (const text of [script, lib]) expect(text).not.toMatch(/--trusted-host|build-essential|python3-dev|libpq-dev/);
        expect(script).toMatch(/^apt_install [^\n]*python3-psycopg2/m);
        // The script refuses a plain-HTTP index itself too (the config check is the first line of defence).
        const r = spawnSync(
            "bash",
            ["-c", `die() { echo "$*"; exit 1; }\nPIP_INDEX_URL=http://10.0.0.1:3141/simple/\n${/^case \$PIP_INDEX_URL in[\s\S]*?^esac$/m.exec(script)?.[0]}`],
            {
                encoding: "utf8",
            },
        );
        expect(r.status).toBe(1);
        expect(r.stdout).toContain("is not https://");
    });

    test("the new venv is root's before it is marked complete; the build user owns it only while pip runs", () => {
        const build = fn("build_synapse_venv");
        const at = (s: string) => build.indexOf(s);
        expect(at('install -d -m 755 -o "$BUILD_USER" -g "$BUILD_USER" "$venv"')).toBeGreaterThan(0);
        expect(at("check_requirements()")).toBeGreaterThan(at('"$venv/bin/pip" install'));
        expect(at('chown -hR root:root "$venv"')).toBeGreaterThan(at("check_requirements()"));
        expect(at('touch "$venv/.complete"')).toBeGreaterThan(at('chown -hR root:root "$venv"'));
        expect(build).toMatch(/useradd --system --user-group --no-create-home --home-dir \/nonexistent --shell \/usr\/sbin\/nologin "\$BUILD_USER"/);
        expect(lib).toMatch(/^BUILD_USER=synapse-build$/m);
    });

    test("pip's environment holds PATH, HOME, LANG and a CA file or proxy of the host's, never a step variable", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "asbuilder-"));
        try {
            // setpriv stand-in: checks and drops "--reuid=U --regid=U --init-groups --" and runs the rest.
            fs.writeFileSync(
                path.join(dir, "setpriv"),
                '#!/bin/sh\n[ "$1" = "--reuid=$BUILDER" ] && [ "$2" = "--regid=$BUILDER" ] && [ "$3" = --init-groups ] && [ "$4" = -- ] || exit 9\necho "user=${1#--reuid=}" >&2\nshift 4\nexec "$@"\n'.replace(
                    /\$BUILDER/g,
                    "synapse-build",
                ),
                { mode: 0o755 },
            );
            const run = (extra: Record<string, string>) =>
                spawnSync("bash", ["-c", `BUILD_USER=synapse-build\nBUILD_HOME=/var/cache/synapse-build\n${fn("as_builder")}\nas_builder env`], {
                    encoding: "utf8",
                    stdio: ["ignore", "pipe", "pipe"],
                    env: { PATH: `${dir}:/usr/bin:/bin`, ADMIN_PASSWORD: "hunter2-secret", MACAROON_SECRET_KEY: "m", DOMAIN: "phillymesh.net", ...extra },
                });
            const plain = run({});
            expect(plain.stderr).toBe("user=synapse-build\n");
            expect(plain.stdout.trim().split("\n").sort()).toEqual(["HOME=/var/cache/synapse-build", "LANG=C.UTF-8", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
            const withCa = run({ SSL_CERT_FILE: "/etc/ssl/certs/ca-certificates.crt", https_proxy: "http://proxy:3128" });
            expect(withCa.stdout).toContain("SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt\n");
            expect(withCa.stdout).toContain("https_proxy=http://proxy:3128\n");
            expect(withCa.stdout).not.toMatch(/hunter2|MACAROON|DOMAIN/);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});
