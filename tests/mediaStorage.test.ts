// Media in object storage (mediaStorage, issue 14): its config checks, the bucket and its provider,
// where the Spaces keys go (and where they never go), what homeserver.yaml and the synapse step gain,
// the trim's unit, and the plan an operator sees turning spaces on and back to local (the whole
// program under the strict mocks, tests/harness.ts).
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as yaml from "js-yaml";
import { mapSource, readConfig } from "../components/config";
import { synapseBuild } from "../components/chatService";
import { homeserverConfig, synapseFiles } from "../components/synapse";
import { mediaSettings, mediaStepFiles, SpacesMedia } from "../components/mediaStorage";
import { BASE_CONFIG, ProgramRun, Recorded, SECRETS, runProgram } from "./harness";

const SPACES_KEYS = { spacesAccessKeyId: "DO00SPACESKEYID0SECRET", spacesSecretKey: "spacesSecretKey+SECRET/0123456789abcdefABCDEF=" };
const SPACES_SECRETS = { ...SECRETS, ...SPACES_KEYS };
const SPACES_ON = { ...BASE_CONFIG, mediaStorage: "spaces" };
const cfg = (c: Record<string, string>, secrets: Record<string, string> = SPACES_SECRETS) => readConfig(mapSource(c, secrets));
const spaces = (c: Record<string, string> = SPACES_ON) => cfg(c).mediaStorage as SpacesMedia;
const settle = <T>(v: unknown): Promise<T> => new Promise((resolve) => (v as { apply(f: (x: T) => void): void }).apply(resolve));

describe("mediaStorage: checked at preview, naming the key", () => {
    test.each([
        ["an unknown kind", { mediaStorage: "s3" }, SPACES_SECRETS, /phillymesh-chat:mediaStorage must be one of local, spaces/],
        [
            "spaces without its access key",
            SPACES_ON,
            { ...SECRETS, spacesSecretKey: SPACES_KEYS.spacesSecretKey },
            /phillymesh-chat:spacesAccessKeyId is required when mediaStorage is spaces/,
        ],
        [
            "spaces without its secret key",
            SPACES_ON,
            { ...SECRETS, spacesAccessKeyId: SPACES_KEYS.spacesAccessKeyId },
            /phillymesh-chat:spacesSecretKey is required when mediaStorage is spaces/,
        ],
        [
            "spaces on a server the operator brings",
            { ...SPACES_ON, hosting: "existing", sshHost: "203.0.113.5", dns: "none", acmeChallenge: "http", apexOnServer: "true" },
            SPACES_SECRETS,
            /phillymesh-chat:mediaStorage spaces needs hosting digitalocean/,
        ],
        [
            "a bucket name with dots",
            { ...SPACES_ON, spacesBucket: "media.phillymesh.net" },
            SPACES_SECRETS,
            /phillymesh-chat:spacesBucket must be a bucket name/,
        ],
        ["a bucket name with a quote", { ...SPACES_ON, spacesBucket: "x'; rm -rf /" }, SPACES_SECRETS, /phillymesh-chat:spacesBucket must be a bucket name/],
        ["a region that is no slug", { ...SPACES_ON, spacesRegion: "NYC 3" }, SPACES_SECRETS, /phillymesh-chat:spacesRegion must be a slug/],
        ["a cache of no days", { ...SPACES_ON, mediaCacheDays: "0" }, SPACES_SECRETS, /phillymesh-chat:mediaCacheDays must be a whole number from 1/],
        ["a tiny cache", { ...SPACES_ON, mediaCacheMaxMb: "10" }, SPACES_SECRETS, /phillymesh-chat:mediaCacheMaxMb must be a whole number from 64/],
    ])("%s is refused, with nothing declared", async (_what, config, secrets, message) => {
        await expect(runProgram(config, secrets, { preview: true })).rejects.toThrow(message);
    });

    test("a Spaces key stored in plain text is refused, and never echoed", async () => {
        const err = await runProgram(
            { ...SPACES_ON, spacesSecretKey: SPACES_KEYS.spacesSecretKey },
            { ...SECRETS, spacesAccessKeyId: SPACES_KEYS.spacesAccessKeyId },
            {
                preview: true,
            },
        ).catch((e: Error) => e);
        expect(String(err)).toContain("phillymesh-chat:spacesSecretKey must be stored encrypted");
        expect(String(err)).not.toContain(SPACES_KEYS.spacesSecretKey);
    });

    test("unset, it is local; spaces defaults to the droplet's region and a bucket named after the domain", () => {
        expect(cfg(BASE_CONFIG, SECRETS).mediaStorage).toEqual({ kind: "local" });
        const m = spaces();
        expect([m.region, m.bucket, m.cacheDays, m.cacheMaxMb]).toEqual(["nyc3", "phillymesh-net-media", 30, 2048]);
        expect(spaces({ ...SPACES_ON, doRegion: "ams3" }).region).toBe("ams3");
        expect(spaces({ ...SPACES_ON, spacesRegion: "fra1", spacesBucket: "pm-media" })).toMatchObject({ region: "fra1", bucket: "pm-media" });
    });
});

describe("what the server gets", () => {
    const build = synapseBuild(cfg(SPACES_ON));
    const files = synapseFiles(build, {
        postgresPassword: "pg",
        registrationSharedSecret: "r",
        macaroonSecretKey: "m",
        formSecret: "f",
    });
    const file = (p: string) => files.find((f) => f.path === p)!;

    test("homeserver.yaml: the provider as its README documents it, no key in it", () => {
        const hs = yaml.load(yaml.dump(homeserverConfig(build))) as Record<string, any>;
        expect(hs.media_storage_providers).toEqual([
            {
                module: "s3_storage_provider.S3StorageProviderBackend",
                store_local: true,
                store_remote: true,
                store_synchronous: true,
                config: { bucket: "phillymesh-net-media", region_name: "nyc3", endpoint_url: "https://nyc3.digitaloceanspaces.com" },
            },
        ]);
        expect(JSON.stringify(hs)).not.toMatch(/access_key|secret_access/);
        // Local media: no trace of it.
        expect(homeserverConfig(synapseBuild(cfg(BASE_CONFIG, SECRETS)))).not.toHaveProperty("media_storage_providers");
    });

    test("with workers too: the media worker runs the media repository, with the provider from the shared configuration", () => {
        const hs = homeserverConfig(synapseBuild(cfg({ ...SPACES_ON, synapseWorkers: "1", postgresMaxConnections: "20" })));
        expect(hs).toMatchObject({ enable_media_repo: false, media_instance_running_background_jobs: "media_worker1" });
        expect(hs.media_storage_providers).toEqual(homeserverConfig(build).media_storage_providers);
    });

    test("the keys: in the synapse user's home, synapse's alone, in boto3's format", async () => {
        const creds = file("/mnt/matrix_data/synapse/.aws/credentials");
        expect([creds.mode, creds.owner]).toEqual(["0600", "synapse:synapse"]);
        expect(await settle<string>(creds.content)).toBe(
            `[default]\naws_access_key_id = ${SPACES_KEYS.spacesAccessKeyId}\naws_secret_access_key = ${SPACES_KEYS.spacesSecretKey}`,
        );
        expect(file("/mnt/matrix_data/synapse/.aws/config").content).toBe(
            "[default]\nregion = nyc3\nrequest_checksum_calculation = when_required\nresponse_checksum_validation = when_required\nca_bundle = /etc/ssl/certs/ca-certificates.crt",
        );
    });

    test("the provider is pinned, and the weekly refresh rebuilds Synapse's virtualenv with it", () => {
        expect(file("/etc/phillymesh-chat/synapse-refresh.env").content).toMatch(/^SYNAPSE_REQUIREMENTS='synapse-s3-storage-provider==1\.7\.0'$/m);
        const local = synapseFiles(synapseBuild(cfg(BASE_CONFIG, SECRETS)), {
            postgresPassword: "",
            registrationSharedSecret: "",
            macaroonSecretKey: "",
            formSecret: "",
        });
        expect(local.find((f) => f.path === "/etc/phillymesh-chat/synapse-refresh.env")!.content).not.toContain("SYNAPSE_REQUIREMENTS");
        expect(local.some((f) => f.path.includes(".aws"))).toBe(false);
    });

    test("the trim's settings and unit: as synapse, writing only the media store, sandboxed", () => {
        const m = spaces();
        expect(mediaSettings("/mnt/matrix_data", m)).toEqual({
            bucket: "phillymesh-net-media",
            endpoint: "https://nyc3.digitaloceanspaces.com",
            region: "nyc3",
            mediaStore: "/mnt/matrix_data/synapse/media",
            cacheDays: 30,
            cacheMaxMb: 2048,
            homeserverConfig: "/etc/matrix-synapse/homeserver.yaml",
        });
        const step = mediaStepFiles("/mnt/matrix_data", m);
        const unit = step.find((f) => f.path === "/etc/systemd/system/phillymesh-chat-media-trim.service")!.content as string;
        expect(unit).toMatch(/^ExecStart=\/opt\/synapse\/current\/bin\/python -I \/usr\/local\/sbin\/phillymesh-chat-media-trim$/m);
        expect(unit).toMatch(/^User=synapse$/m);
        expect(unit).toMatch(/^ReadWritePaths=\/mnt\/matrix_data\/synapse\/media$/m);
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "media-trim-"));
        try {
            const f = path.join(dir, "phillymesh-chat-media-trim.service");
            fs.writeFileSync(f, unit + "\n");
            const r = spawnSync("systemd-analyze", ["security", "--offline=true", "--no-pager", f], { encoding: "utf8" });
            const score = Number(/Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout)?.[1]);
            expect(score).toBeLessThanOrEqual(3.0);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });

    test("the trim program is valid Python and never deletes without verifying", () => {
        const src = fs.readFileSync(path.join(__dirname, "..", "files", "server", "sbin", "phillymesh-chat-media-trim.py"), "utf8");
        const r = spawnSync("python3", ["-c", "import ast, sys; ast.parse(sys.stdin.read())"], { input: src, encoding: "utf8" });
        expect(r.status).toBe(0);
        // The tool's own --delete (which trusts a bare HEAD) is never used; the one os.remove follows a verification.
        expect(src).not.toMatch(/"--delete"/);
        expect(src.match(/os\.remove\(/g)).toHaveLength(1);
        expect(src).toMatch(/if not verified\(s3, s\["bucket"\], rel, path\):\s+bad\.append\(rel\)\s+continue/);
    });
});

describe("turning spaces on, and back to local, under the mocks", () => {
    const commands = (run: ProgramRun) => new Map(run.ofType("command:remote:Command").map((r) => [r.name, r]));
    const shape = (run: ProgramRun) => JSON.stringify(run.resources.map((r) => [r.type, r.name, r.inputs, r.dependsOn, r.protect]));
    let off: ProgramRun, explicitLocal: ProgramRun, on: ProgramRun, offAgain: ProgramRun;
    beforeAll(async () => {
        off = await runProgram(BASE_CONFIG, SECRETS, { preview: true });
        explicitLocal = await runProgram({ ...BASE_CONFIG, mediaStorage: "local" }, SECRETS, { preview: true });
        on = await runProgram(SPACES_ON, SPACES_SECRETS, { preview: true });
        offAgain = await runProgram(BASE_CONFIG, SECRETS, { preview: true });
    }, 60000);

    test("local, set or not, and local again after spaces: byte for byte the same stack", () => {
        expect(shape(explicitLocal)).toBe(shape(off));
        expect(shape(offAgain)).toBe(shape(off));
        expect(off.resources.some((r) => /Spaces|MediaBucket|MediaStorage|providers:digitalocean/.test(r.type))).toBe(false);
        expect(commands(off).get("chat-synapse-run")!.inputs.stdin).not.toMatch(/export SYNAPSE_REQUIREMENTS|media_storage_providers:|\/\.aws\//);
    });

    test("on: the bucket, its provider and the media step are added, only the synapse step changes", () => {
        const id = (r: Recorded) => `${r.type} ${r.name}`;
        const before = new Map(off.resources.map((r) => [id(r), r]));
        const added = on.resources.filter((r) => !before.has(id(r))).map((r) => [r.type, r.name]);
        expect(added).toEqual([
            ["phillymesh-chat:index:MediaBucket", "chat"],
            ["pulumi:providers:digitalocean", "chat-spaces"],
            ["digitalocean:index/spacesBucket:SpacesBucket", "chat-media"],
            ["phillymesh-chat:index:MediaStorage", "chat"],
            ["phillymesh-chat:index:RemoteStep", "chat-media-storage"],
            ["command:remote:Command", "chat-media-storage-run"],
        ]);
        const changed = on.resources
            .filter((r) => before.has(id(r)) && JSON.stringify(before.get(id(r))!.inputs) !== JSON.stringify(r.inputs))
            .map((r) => r.name);
        expect(changed).toEqual(["chat-synapse-run"]);
    });

    test("the bucket: private, protected, never force-destroyed, made by the provider that carries the Spaces keys as secrets", () => {
        const bucket = on.byName("chat-media");
        expect(bucket.inputs).toMatchObject({ name: "phillymesh-net-media", region: "nyc3", acl: "private", forceDestroy: false });
        expect(bucket.protect).toBe(true);
        expect(bucket.retainOnDelete).toBe(true);
        const provider = on.byName("chat-spaces");
        expect(provider.inputs).toMatchObject({ spacesAccessId: SPACES_KEYS.spacesAccessKeyId, spacesSecretKey: SPACES_KEYS.spacesSecretKey });
        expect(provider.secretInputs.has("spacesAccessId")).toBe(true);
        expect(provider.secretInputs.has("spacesSecretKey")).toBe(true);
    });

    test("in order: the bucket before Synapse, the media step after it; the media step undoes itself", () => {
        expect(on.byName("chat-synapse-run").dependsOn).toContain("chat-media");
        expect(on.byName("chat-media-storage-run").dependsOn).toContain("chat-synapse-run");
        const step = on.byName("chat-media-storage-run");
        expect(step.inputs.delete).toMatch(/^bash -c '/);
        expect(step.inputs.delete).toMatch(/systemctl disable --quiet --now "\$UNIT\.timer"/);
        expect(step.inputs.stdin).toContain("export BUCKET='phillymesh-net-media'");
    });

    test("the synapse step installs the provider into Synapse's virtualenv", () => {
        const stdin: string = on.byName("chat-synapse-run").inputs.stdin;
        expect(stdin).toContain("export SYNAPSE_REQUIREMENTS='synapse-s3-storage-provider==1.7.0'");
        expect(stdin).toContain('build_synapse_venv "$VENV" "$SYNAPSE_VERSION" "$PIP_INDEX_URL" "${REQUIREMENTS[@]}"');
    });

    test("the Spaces keys appear in no input that is not secret, and never on a command line", () => {
        const carriers: string[] = [];
        for (const r of on.resources as Recorded[]) {
            for (const [key, value] of Object.entries(r.inputs)) {
                const text = JSON.stringify(value) ?? "";
                for (const secret of Object.values(SPACES_KEYS)) {
                    if (!text.includes(secret)) continue;
                    carriers.push(`${r.name}.${key}`);
                    expect({ resource: r.name, input: key, secret: r.secretInputs.has(key) }).toEqual({ resource: r.name, input: key, secret: true });
                    // The command line of a step (create/update/delete) is what `ps` and logs would show.
                    expect(["create", "update", "delete"]).not.toContain(key);
                }
            }
        }
        // Not vacuous: the provider and the synapse step's stdin carry them, both secret.
        expect(carriers.sort()).toEqual(["chat-spaces.spacesAccessId", "chat-spaces.spacesSecretKey", "chat-synapse-run.stdin", "chat-synapse-run.stdin"]);
        // The media step never sees them: the trim reads them from synapse's home on the server.
        expect(on.byName("chat-media-storage-run").secretInputs.has("stdin")).toBe(false);
    });
});

describe("the trim's guard, run by python3 with boto3 stood in (tests/mediaTrim.py)", () => {
    test("a copy is verified only with the bucket's size and MD5; no trim before a verified move", () => {
        const program = path.join(__dirname, "..", "files", "server", "sbin", "phillymesh-chat-media-trim.py");
        const r = spawnSync("python3", [path.join(__dirname, "mediaTrim.py"), program], { encoding: "utf8" });
        expect(r.stderr).toBe("");
        expect(r.stdout).toMatch(/all checks passed/);
        expect((r.stdout.match(/^ok /gm) ?? []).length).toBe(10);
        expect(r.status).toBe(0);
    });
});
