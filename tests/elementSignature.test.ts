/**
 * files/steps/element.sh's signature check, the real step as sent to the server (lib.sh included) run
 * by bash with the real gpg and gpgv, on a release and keys made here: throwaway keys in a temporary
 * GNUPGHOME, the tarball, its signature and the key served as file:// URLs. A release signed by a key
 * other than the pinned one fails before anything is unpacked, naming the fingerprint that signed it
 * and the config key to change once it is checked (Element rotating its release key).
 */
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { readFile, stepScript } from "../components/templates";

let dir: string;
let gnupg: string;
const fingerprints: Record<string, string> = {};

function gpg(args: string[], input?: string) {
    const r = spawnSync("gpg", ["--batch", "--quiet", ...args], { env: { PATH: process.env.PATH, GNUPGHOME: gnupg }, encoding: "utf8", input });
    if (r.status !== 0) throw new Error(`gpg ${args.join(" ")}: ${r.stderr}`);
    return r.stdout;
}

/** A key pair for `name`, made with no passphrase; its primary key's fingerprint. */
function makeKey(name: string): string {
    const uid = `${name} <${name.toLowerCase()}@releases.test>`;
    gpg(["--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"]);
    const colons = gpg(["--with-colons", "--fingerprint", uid]);
    return /^fpr:(?:[^:]*:){8}([0-9A-F]{40}):/m.exec(colons)![1];
}

beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "element-signature-"));
    gnupg = path.join(dir, "gnupg");
    fs.mkdirSync(gnupg, { mode: 0o700 });
    for (const name of ["Pinned", "Rotated"]) fingerprints[name] = makeKey(name);
    // An Element Web release as the real one is laid out: element-v<version>/index.html, ...
    fs.mkdirSync(path.join(dir, "src", "element-v1.99.0"), { recursive: true });
    fs.writeFileSync(path.join(dir, "src", "element-v1.99.0", "index.html"), "<!doctype html><title>Element</title>\n");
    const tar = spawnSync("tar", ["-czf", path.join(dir, "element.tar.gz"), "-C", path.join(dir, "src"), "element-v1.99.0"]);
    expect(tar.status).toBe(0);
});

afterAll(() => {
    spawnSync("gpgconf", ["--kill", "all"], { env: { PATH: process.env.PATH, GNUPGHOME: gnupg } });
    fs.rmSync(dir, { recursive: true, force: true });
});

/** Signs the tarball with `signer`, publishes the armoured `published` keys, runs the step. */
function runStep(signer: string, published: string[], opts: { tamper?: boolean } = {}) {
    const run = fs.mkdtempSync(path.join(dir, "run-"));
    const tarball = path.join(run, "element.tar.gz");
    fs.copyFileSync(path.join(dir, "element.tar.gz"), tarball);
    gpg(["--local-user", fingerprints[signer], "--armor", "--detach-sign", "--output", `${tarball}.asc`, tarball]);
    if (opts.tamper) fs.appendFileSync(tarball, "x");
    fs.writeFileSync(path.join(run, "key.asc"), gpg(["--armor", "--export", ...published.map((k) => fingerprints[k])]));
    const root = path.join(run, "www");
    const env = {
        STEP_NAME: "element",
        ELEMENT_ROOT: root,
        ELEMENT_VERSION: "1.99.0",
        ELEMENT_URL: `file://${tarball}`,
        ELEMENT_KEY_URL: `file://${path.join(run, "key.asc")}`,
        ELEMENT_KEY_FINGERPRINT: fingerprints.Pinned,
    };
    // The step as sent; only its package installs (curl, gnupg, gpgv: present here) are skipped.
    const step = readFile("steps/element.sh");
    const text = stepScript("element.sh", env).replace(step, `apt_install() { :; }\n${step}`);
    const r = spawnSync("bash", ["-s"], { input: text, encoding: "utf8", env: { PATH: process.env.PATH, HOME: run }, timeout: 60_000 });
    const releases = fs.existsSync(path.join(root, "releases")) ? fs.readdirSync(path.join(root, "releases")) : [];
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, releases, live: fs.existsSync(path.join(root, "current", "index.html")) };
}

describe("element.sh checks the release's signature against the pinned key before unpacking", () => {
    test("signed by the pinned key: verified, unpacked and live", () => {
        const r = runStep("Pinned", ["Pinned"]);
        expect(r.stderr).toBe("");
        expect(r.status).toBe(0);
        expect(r.stdout).toContain(`signature good (key ${fingerprints.Pinned})`);
        expect(r.releases).toEqual(["1.99.0"]);
        expect(r.live).toBe(true);
    });

    test("signed by another key (a rotation): fails before unpacking, naming the signer's fingerprint and elementSigningKeyFingerprint", () => {
        const r = runStep("Rotated", ["Pinned"]);
        expect(r.status).toBe(1);
        expect(r.stderr).toContain(
            `[element] ERROR: Element 1.99.0 is signed by key ${fingerprints.Rotated}, not by the pinned key ${fingerprints.Pinned}; nothing was unpacked (the key at file://`,
        );
        expect(r.stderr).toContain("does not hold it)");
        expect(r.stderr).toContain(`check ${fingerprints.Rotated} against Element's own announcement, then set elementSigningKeyFingerprint`);
        expect(r.releases).toEqual([]);
        expect(r.live).toBe(false);
    });

    test("the key URL already serves the new key: the message names it, its owner, and still nothing is unpacked", () => {
        const r = runStep("Rotated", ["Rotated"]);
        expect(r.status).toBe(1);
        expect(r.stderr).toContain(`Element 1.99.0 is signed by key ${fingerprints.Rotated}, not by the pinned key ${fingerprints.Pinned}`);
        expect(r.stderr).toContain(`holds it: ${fingerprints.Rotated}, Rotated <rotated@releases.test>)`);
        expect(r.stderr).toContain("elementSigningKeyFingerprint");
        expect(r.releases).toEqual([]);
    });

    test("signed by the pinned key but the key URL lacks it: names what it holds", () => {
        const r = runStep("Pinned", ["Rotated"]);
        expect(r.status).toBe(1);
        expect(r.stderr).toContain(`is not the pinned key ${fingerprints.Pinned} (it holds: ${fingerprints.Rotated}); nothing was unpacked`);
        expect(r.releases).toEqual([]);
    });

    test("a tarball altered after signing: does not verify, nothing unpacked", () => {
        const r = runStep("Pinned", ["Pinned", "Rotated"], { tamper: true });
        expect(r.status).toBe(1);
        expect(r.stderr).toContain(`does not verify against ${fingerprints.Pinned}; nothing was unpacked`);
        expect(r.stderr).not.toContain("is signed by key");
        expect(r.releases).toEqual([]);
    });
});
