/**
 * renovate.json, read by Renovate itself: its `local` platform with `--dry-run=extract` (no network,
 * no token) on a copy of the repository's tracked files, and its config validator. The extraction
 * must find Synapse (PyPI) and Element Web (GitHub releases) in Pulumi.prod.yaml at the versions
 * there, every workflow action pinned by digest, and the npm dependencies with their lock file.
 * Renovate is installed, at the version pinned there, by scripts/install-test-tools.sh.
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as yaml from "js-yaml";

const ROOT = path.join(__dirname, "..");
const INSTALLER = fs.readFileSync(path.join(ROOT, "scripts", "install-test-tools.sh"), "utf8");
const VERSION = /^RENOVATE_VERSION=(\S+)$/m.exec(INSTALLER)?.[1] ?? "";
const PACKAGE = `/usr/local/lib/renovate-${VERSION}/node_modules/renovate`;
// Renovate needs Node >= 24.11: the project's (the `node` devDependency), else the one running jest.
const LOCAL_NODE = path.join(ROOT, "node_modules", ".bin", "node");
const NODE = fs.existsSync(LOCAL_NODE) ? LOCAL_NODE : process.execPath;

interface Dep {
    depName: string;
    datasource?: string;
    currentValue?: string;
    currentDigest?: string;
    extractVersion?: string;
    depType?: string;
    skipReason?: string;
}
interface PackageFile {
    packageFile: string;
    deps: Dep[];
    lockFiles?: string[];
}
type PackageFiles = Record<string, PackageFile[]>;

let work: string;
let repo: string;
let copied: string[];
let packageFiles: PackageFiles;
let seconds: number;

/** Runs one of Renovate's programs in the copy, with only what it needs in its environment. */
function renovate(program: string, args: string[]) {
    return spawnSync(NODE, [path.join(PACKAGE, "dist", program), ...args], {
        cwd: repo,
        encoding: "utf8",
        timeout: 120_000,
        maxBuffer: 64 * 1024 * 1024,
        env: {
            PATH: `${path.dirname(NODE)}:/usr/bin:/bin`,
            HOME: work,
            // Its caches and clones go here, never into the repository.
            RENOVATE_BASE_DIR: path.join(work, "renovate"),
            LOG_FORMAT: "json",
            LOG_LEVEL: "info",
        },
    });
}

function listFiles(dir: string, under = ""): string[] {
    return fs.readdirSync(path.join(dir, under), { withFileTypes: true }).flatMap((e) => {
        const rel = path.join(under, e.name);
        return e.isDirectory() ? listFiles(dir, rel) : [rel];
    });
}

beforeAll(() => {
    if (!VERSION) throw new Error("scripts/install-test-tools.sh has no RENOVATE_VERSION=... line");
    if (!fs.existsSync(path.join(PACKAGE, "package.json"))) {
        throw new Error(`Renovate ${VERSION} is not installed (no ${PACKAGE}): run scripts/install-test-tools.sh (npm run test:tools)`);
    }
    // The tracked files (as they are in the working tree) plus renovate.json, nothing untracked.
    work = fs.mkdtempSync(path.join(os.tmpdir(), "renovate-test-"));
    repo = path.join(work, "repo");
    const tracked = spawnSync("git", ["ls-files", "-z"], { cwd: ROOT, encoding: "utf8" });
    expect(tracked.status).toBe(0);
    const files = [...new Set([...tracked.stdout.split("\0").filter(Boolean), "renovate.json"])];
    for (const f of files) {
        const from = path.join(ROOT, f);
        if (!fs.lstatSync(from, { throwIfNoEntry: false })?.isFile()) continue; // deleted, or a symlink
        fs.mkdirSync(path.dirname(path.join(repo, f)), { recursive: true });
        fs.copyFileSync(from, path.join(repo, f));
    }
    copied = listFiles(repo).sort();

    const started = Date.now();
    const r = renovate("renovate.js", ["--platform=local", "--dry-run=extract"]);
    seconds = (Date.now() - started) / 1000;
    if (r.status !== 0) throw new Error(`renovate exited ${r.status} (${r.error ?? ""}):\n${r.stdout}\n${r.stderr}`);
    const lines = r.stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as { msg: string; level: number; packageFiles?: PackageFiles });
    const errors = lines.filter((l) => l.level >= 50);
    if (errors.length) throw new Error(`renovate logged errors: ${JSON.stringify(errors)}`);
    const extracted = lines.find((l) => l.packageFiles);
    if (!extracted) throw new Error(`renovate reported no packageFiles:\n${r.stdout}`);
    packageFiles = extracted.packageFiles!;
});

afterAll(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
});

function depsOf(manager: string, packageFile: string): Dep[] {
    const file = (packageFiles[manager] ?? []).filter((f) => f.packageFile === packageFile);
    expect(file.length).toBeGreaterThan(0);
    return file.flatMap((f) => f.deps);
}

// Renovate skips lookups of GitHub dependencies without a token; here only that reason is allowed.
const noSkipBut = (d: Dep) => expect([undefined, "github-token-required"]).toContain(d.skipReason);

describe("Renovate's extraction with renovate.json", () => {
    const stack = (yaml.load(fs.readFileSync(path.join(ROOT, "Pulumi.prod.yaml"), "utf8")) as { config: Record<string, unknown> }).config;

    test("runs in seconds, with only the managers renovate.json enables, and writes nothing into the repository", () => {
        console.log(`renovate ${VERSION} --platform=local --dry-run=extract: ${seconds.toFixed(1)} s`);
        expect(Object.keys(packageFiles).sort()).toEqual(["github-actions", "npm", "regex"]);
        expect(listFiles(repo).sort()).toEqual(copied);
    });

    test("Synapse: matrix-synapse from PyPI at Pulumi.prod.yaml's synapseVersion", () => {
        const deps = depsOf("regex", "Pulumi.prod.yaml").filter((d) => d.depName === "matrix-synapse");
        expect(deps).toEqual([expect.objectContaining({ datasource: "pypi", currentValue: String(stack["phillymesh-chat:synapseVersion"]) })]);
        expect(deps[0].skipReason).toBeUndefined();
    });

    test("Element Web: element-hq/element-web from its GitHub releases (tags v<version>) at elementVersion", () => {
        const deps = depsOf("regex", "Pulumi.prod.yaml").filter((d) => d.depName === "element-hq/element-web");
        expect(deps).toEqual([
            expect.objectContaining({
                datasource: "github-releases",
                currentValue: String(stack["phillymesh-chat:elementVersion"]),
                extractVersion: "^v(?<version>.*)$",
            }),
        ]);
        noSkipBut(deps[0]);
    });

    test("the workflow's actions: every one found, each pinned by commit with its release beside it", () => {
        const workflow = fs.readFileSync(path.join(ROOT, ".github", "workflows", "pulumi.yml"), "utf8");
        const uses = [...workflow.matchAll(/^\s*-?\s*uses:\s*(\S+)/gm)].map((m) => m[1]);
        expect(uses.length).toBeGreaterThan(0);
        const actions = depsOf("github-actions", ".github/workflows/pulumi.yml").filter((d) => d.depType === "action");
        expect(actions).toHaveLength(uses.length);
        for (const a of actions) {
            expect(a).toEqual(expect.objectContaining({ datasource: "github-tags", currentDigest: expect.stringMatching(/^[0-9a-f]{40}$/) }));
            expect(a.currentValue).toMatch(/^v\d+\.\d+\.\d+$/);
            noSkipBut(a);
        }
    });

    test("npm: every dependency of package.json, with package-lock.json", () => {
        const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, "package.json"), "utf8")) as Record<string, Record<string, string>>;
        const npm = (packageFiles.npm ?? []).find((f) => f.packageFile === "package.json");
        expect(npm?.lockFiles).toEqual(["package-lock.json"]);
        const found = Object.fromEntries(npm!.deps.filter((d) => d.datasource === "npm").map((d) => [d.depName, d.currentValue]));
        expect(found).toEqual(expect.objectContaining({ ...pkg.dependencies, ...pkg.devDependencies }));
    });

    test("renovate.json passes Renovate's own validator (--strict: nothing to migrate)", () => {
        const r = renovate("config-validator.js", ["--strict"]);
        expect(r.stdout + r.stderr).toContain("Config validated successfully");
        expect(r.status).toBe(0);
    });
});
